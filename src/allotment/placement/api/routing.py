"""A small exact router: path templates to per-method endpoints, with upstream's 404 and
405 (``Allow`` lists exactly the methods a path has)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from allotment import errors
from allotment.placement import microversions as mv
from allotment.placement.api.http import Endpoint, mv_or_min
from allotment.web import error_response, set_route

_PARAM = re.compile(r"\{(\w+)\}")


def _compile(template: str) -> re.Pattern[str]:
    return re.compile(_PARAM.sub(r"(?P<\1>[^/]+)", template))


class Router:
    def __init__(self, routes: Sequence[tuple[str, Mapping[str, Endpoint]]]) -> None:
        self._static: dict[str, Mapping[str, Endpoint]] = {}
        self._dynamic: list[tuple[re.Pattern[str], str, Mapping[str, Endpoint]]] = []
        for template, methods in routes:
            if "{" in template:
                self._dynamic.append((_compile(template), template, methods))
            else:
                self._static[template] = methods

    def match(self, path: str) -> tuple[Mapping[str, Endpoint], dict[str, str], str] | None:
        """The endpoints of ``path``, its parameters and the template it matched."""
        methods = self._static.get(path)
        if methods is not None:
            return methods, {}, path
        for pattern, template, methods in self._dynamic:
            found = pattern.fullmatch(path)
            if found:
                return methods, found.groupdict(), template
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.match(scope["path"] or "/")
        method = scope["method"]
        if found is not None:
            set_route(scope, found[2])
        if found is None:
            exc: errors.AllotmentError = errors.NotFound("The resource could not be found.")
        elif method not in found[0]:
            exc = errors.MethodNotAllowed(
                "The method specified is not allowed for this resource.", sorted(found[0])
            )
        else:
            endpoints, params, _ = found
            scope["path_params"] = params
            response = await endpoints[method](Request(scope, receive))
            await response(scope, receive, send)
            return
        ctx = scope["state"]["context"]
        accept = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"accept"), None)
        response = error_response(
            exc,
            request_id=ctx.request_id,
            with_code=mv_or_min(scope).at_least(mv.ERROR_CODES),
            method=method,
            accept=accept,
        )
        await response(scope, receive, send)

"""Puts load on a scheduler the way several nova-conductors do: ``callers`` processes,
each with Nova 34's own ``nova.scheduler.rpcapi.SchedulerAPI`` (``nova.rpc`` initialised
from a nova.conf as ``scheduler_rpc.py`` does), send single-instance
``select_destinations`` calls, each with a new instance uuid, so every call claims.

Reads one JSON object on stdin: ``{"transport_url", "rpc_response_timeout" (optional),
"callers", "calls" (in all, split between the callers), "warmup" (unmeasured calls per
caller, default 1), "flavor" and "image" (as ``novaobj`` builds them), "return_alternates",
"context"}``; each call's RequestSpec is made by ``RequestSpec.from_components`` as nova-api
makes a boot's, all of a caller's before the start. The callers start together once each has
made its warm-up calls. Writes one
JSON object: ``{"calls": [{"seconds", "nova_serializer_seconds", "host", "alternates",
"error"}...], "wall"}`` with ``wall`` the seconds from the common start to the last answer
and ``nova_serializer_seconds`` the part of a call's time spent in Nova's own serializer on
this side (the RequestSpec to primitives, the Selections back to objects), which any
scheduler's caller pays.
"""

import json
import multiprocessing
import sys
import time
import traceback
import uuid

from nova import config, context, objects
from nova.scheduler import rpcapi
from novaobj import build
from scheduler_rpc import conf_file


def boot_spec(request):
    """A boot's RequestSpec for one new instance, as nova-api makes it; with its context."""
    instance = str(uuid.uuid4())
    ctxt = context.RequestContext(**request.get("context", {}))
    spec = objects.RequestSpec.from_components(
        ctxt,
        instance,
        build(request["image"]),
        build(request["flavor"]),
        None,
        objects.InstancePCIRequests(requests=[]),
        {},
        None,
        None,
        port_resource_requests=[],
        request_level_params=objects.RequestLevelParams(),
    )
    spec.is_bfv = False
    return ctxt, spec, instance


class TimedSerializer:
    """Nova's RPC serializer, timed: the seconds spent in it since the last ``reset``."""

    def __init__(self, inner):
        self.inner = inner
        self.seconds = 0.0

    def reset(self):
        self.seconds = 0.0

    def _timed(self, method, *args):
        begin = time.perf_counter()
        try:
            return method(*args)
        finally:
            self.seconds += time.perf_counter() - begin

    def serialize_entity(self, ctxt, entity):
        return self._timed(self.inner.serialize_entity, ctxt, entity)

    def deserialize_entity(self, ctxt, entity):
        return self._timed(self.inner.deserialize_entity, ctxt, entity)

    def serialize_context(self, ctxt):
        return self._timed(self.inner.serialize_context, ctxt)

    def deserialize_context(self, ctxt):
        return self._timed(self.inner.deserialize_context, ctxt)


def one_call(api, request, made):
    """One select_destinations as conductor makes it (timed: the call, not the spec's
    making): (seconds, seconds in Nova's serializer, host, alternates)."""
    ctxt, spec, instance = made
    api.client.serializer.reset()
    begin = time.perf_counter()
    found = api.select_destinations(
        ctxt,
        spec,
        [instance],
        return_objects=True,
        return_alternates=request.get("return_alternates", True),
    )
    seconds = time.perf_counter() - begin
    chosen, *alternates = found[0]
    return seconds, api.client.serializer.seconds, chosen.service_host, len(alternates)


def caller(request, calls, barrier, results):
    """One conductor: its own transport and SchedulerAPI, then ``calls`` timed calls; a
    caller that cannot start breaks the barrier and sends its traceback."""
    try:
        timed(request, calls, barrier, results)
    except Exception:
        barrier.abort()
        results.put({"failed": traceback.format_exc()})


def timed(request, calls, barrier, results):
    config.parse_args(
        ["nova-conductor"], default_config_files=[conf_file(request)], configure_db=False
    )
    api = rpcapi.SchedulerAPI()
    api.client.serializer = TimedSerializer(api.client.serializer)
    for _ in range(request.get("warmup", 1)):
        one_call(api, request, boot_spec(request))
    # nova-api made each RequestSpec before conductor sends it: made before the start, so
    # the measured callers spend their CPU on the calls, not on building objects.
    specs = [boot_spec(request) for _ in range(calls)]
    barrier.wait(timeout=600)
    started = time.monotonic()
    made = []
    for spec in specs:
        begin = time.perf_counter()
        try:
            seconds, serializer, host, alternates = one_call(api, request, spec)
            error = None
        except Exception as exc:  # NoValidHost or a timeout: counted, not fatal
            seconds, serializer = time.perf_counter() - begin, 0.0
            host, alternates, error = None, 0, f"{type(exc).__name__}: {exc}"[:300]
        made.append(
            {
                "seconds": seconds,
                "nova_serializer_seconds": serializer,
                "host": host,
                "alternates": alternates,
                "error": error,
            }
        )
    results.put({"started": started, "ended": time.monotonic(), "calls": made})


def main():
    request = json.load(sys.stdin)
    objects.register_all()
    callers = request["callers"]
    share = [request["calls"] // callers + (i < request["calls"] % callers) for i in range(callers)]
    forks = multiprocessing.get_context("fork")
    barrier = forks.Barrier(callers)
    results = forks.Queue()
    workers = [
        forks.Process(target=caller, args=(request, calls, barrier, results)) for calls in share
    ]
    for worker in workers:
        worker.start()
    done = []
    for _ in workers:
        done.append(results.get(timeout=request.get("timeout", 3600)))
    failed = [part["failed"] for part in done if "failed" in part]
    if failed:
        raise SystemExit("a caller failed:\n" + failed[0])
    for worker in workers:
        worker.join()
        if worker.exitcode != 0:
            raise SystemExit(f"a caller exited {worker.exitcode}")
    json.dump(
        {
            "calls": [call for part in done for call in part["calls"]],
            "wall": max(p["ended"] for p in done) - min(p["started"] for p in done),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()

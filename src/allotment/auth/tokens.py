"""Token authentication: opaque random tokens, stored only as SHA-256 hashes in SQL.

A bootstrap admin token is created on the first start against a database and written to a
0600 file in that process's state directory; other processes (``--workers``, more servers
on the same database) find it there and write nothing. ``allotment token revoke
bootstrap-admin`` removes it: the next start creates a new one. ``allotment token create``
makes more (e.g. a ``service`` token for compute hosts and the scheduler). Verified tokens
are cached briefly in memory so a request does not cost a query: a revocation takes effect
on the next request in the process that revoked the token (its cache is dropped) and within
``CACHE_SECONDS`` in every other.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from allotment.auth.base import TOKEN_HEADER
from allotment.auth.tables import auth_tokens
from allotment.context import RequestContext
from allotment.db import locks
from allotment.db.database import AnyRow, Database, utcnow

LOG = logging.getLogger(__name__)
# The revocation bound in other processes: one look-up per token and process per interval.
CACHE_SECONDS = 0.5
BOOTSTRAP_NAME = "bootstrap-admin"
KNOWN_ROLES = ("admin", "service", "reader", "member")
# Keystone's only system scope: the whole deployment.
SYSTEM_SCOPES = ("all",)


@dataclass(frozen=True)
class TokenRecord:
    name: str
    user_id: str
    project_id: str | None
    roles: frozenset[str]
    expires_at: datetime | None
    system_scope: str | None = None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._cache: dict[str, tuple[float, TokenRecord | None]] = {}
        self._lock = threading.Lock()

    def create(
        self,
        name: str,
        roles: list[str],
        *,
        user_id: str | None = None,
        project_id: str | None = None,
        system_scope: str | None = None,
        expires_at: datetime | None = None,
    ) -> str:
        """Create a token and return it; only its hash is stored. Like a Keystone token it
        is scoped to a project or to the system (``system_scope="all"``), not both."""
        unknown = sorted(set(roles) - set(KNOWN_ROLES))
        if unknown or not roles:
            raise ValueError(f"roles must be some of {', '.join(KNOWN_ROLES)}; got {roles}")
        if system_scope is not None and system_scope not in SYSTEM_SCOPES:
            raise ValueError(
                f"the system scope must be {' or '.join(SYSTEM_SCOPES)}; got {system_scope!r}"
            )
        if system_scope is not None and project_id is not None:
            raise ValueError("a token is scoped to a project or to the system, not both")
        token = secrets.token_urlsafe(32)
        with self.db.write() as conn:
            conn.execute(
                auth_tokens.insert().values(
                    token_hash=_digest(token),
                    name=name,
                    user_id=user_id or name,
                    project_id=project_id,
                    system_scope=system_scope,
                    roles=",".join(sorted(set(roles))),
                    created_at=utcnow(),
                    expires_at=expires_at,
                )
            )
        return token

    def revoke(self, name: str) -> int:
        with self.db.write() as conn:
            count = conn.execute(auth_tokens.delete().where(auth_tokens.c.name == name)).rowcount
        with self._lock:
            self._cache.clear()
        return count

    def list(self) -> list[TokenRecord]:
        with self.db.read() as conn:
            rows = conn.execute(sa.select(auth_tokens).order_by(auth_tokens.c.id)).all()
        return [self._record(row) for row in rows]

    @staticmethod
    def _record(row: AnyRow) -> TokenRecord:
        m = row._mapping
        return TokenRecord(
            name=m["name"],
            user_id=m["user_id"],
            project_id=m["project_id"],
            roles=frozenset(filter(None, m["roles"].split(","))),
            expires_at=m["expires_at"],
            system_scope=m["system_scope"],
        )

    def lookup(self, token: str) -> TokenRecord | None:
        digest = _digest(token)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            record = cached[1]
        else:
            with self.db.read() as conn:
                row = conn.execute(
                    sa.select(auth_tokens).where(auth_tokens.c.token_hash == digest)
                ).first()
            record = None if row is None else self._record(row)
            with self._lock:
                if len(self._cache) > 10000:
                    self._cache.clear()
                self._cache[digest] = (now + CACHE_SECONDS, record)
        if record is not None and record.expires_at is not None and record.expires_at < utcnow():
            return None
        return record

    def ensure_bootstrap(self, state_dir: Path) -> Bootstrap:
        """Create the bootstrap admin token once per database; write its file only where
        it was created. A process that finds one (made by another process, or by an
        earlier start with this state directory) leaves it alone."""
        path = state_dir / "admin-token"
        if self._file_matches(path):
            return Bootstrap(path, created=False, ours=True)
        # Under a database-wide lock: two processes starting at once create one token.
        with locks.named_lock(self.db, "allotment_bootstrap_token", ".bootstrap-lock") as conn:
            exists = conn.execute(
                sa.select(auth_tokens.c.id).where(auth_tokens.c.name == BOOTSTRAP_NAME)
            ).first()
            conn.commit()
            if exists is not None:
                return Bootstrap(path, created=False, ours=False, stale_file=path.exists())
            token = self.create(BOOTSTRAP_NAME, ["admin"], user_id="admin", project_id="admin")
        state_dir.mkdir(parents=True, exist_ok=True)
        # Replaced whole: a file left by another database's bootstrap token is stale.
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
        os.replace(partial, path)
        return Bootstrap(path, created=True, ours=True)

    def _file_matches(self, path: Path) -> bool:
        try:
            token = path.read_text().strip()
        except FileNotFoundError:
            return False
        record = self.lookup(token) if token else None
        return record is not None and record.name == BOOTSTRAP_NAME


@dataclass(frozen=True)
class Bootstrap:
    """Where the bootstrap admin token is, as a start-up found it."""

    path: Path
    # This process created the token (and wrote the file).
    created: bool
    # The file in this process's state directory holds the database's token.
    ours: bool
    # Not ours, but a file is there (it holds a token this database does not know).
    stale_file: bool = False

    def describe(self) -> str:
        where = self.path.resolve()
        if self.ours:
            made = "created" if self.created else "kept"
            return f"bootstrap admin token {made}: {where} (mode 0600)"
        text = (
            "bootstrap admin token exists in the database (created by another process); "
            f"not writing {where}"
        )
        if self.stale_file:
            text += " (the file there holds a token this database does not know)"
        return text


class TokenAuth:
    name = "token"

    def __init__(self, store: TokenStore) -> None:
        self.store = store

    def authenticate(self, headers: Mapping[str, str], request_id: str) -> RequestContext | None:
        token = headers.get(TOKEN_HEADER)
        if not token:
            return None
        record = self.store.lookup(token)
        if record is None:
            return None
        return RequestContext(
            user_id=record.user_id,
            project_id=record.project_id,
            roles=record.roles,
            request_id=request_id,
            system_scope=record.system_scope,
        )

"""SQL tables of the auth context: API tokens (only their hashes are stored)."""

from __future__ import annotations

import sqlalchemy as sa

from allotment.db.metadata import metadata

auth_tokens = sa.Table(
    "auth_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # sha256 hex of the token; the token itself is never stored.
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.Unicode(255), nullable=False),
    sa.Column("user_id", sa.String(255), nullable=False),
    sa.Column("project_id", sa.String(255), nullable=True),
    # "all" for a system-scoped token (as Keystone's), else NULL: project scope or none.
    sa.Column("system_scope", sa.String(16), nullable=True),
    # Comma-separated role names.
    sa.Column("roles", sa.String(255), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("expires_at", sa.DateTime, nullable=True),
)

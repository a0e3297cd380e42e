"""scheduler change log: every host-cache write is numbered so other processes catch up

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scheduler_change_counter",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduler_change_counter")),
    )
    op.create_table(
        "scheduler_changes",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("touched", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_scheduler_changes")),
    )
    with op.batch_alter_table("scheduler_changes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_scheduler_changes_created_at"), ["created_at"], unique=False
        )
    op.execute(sa.text("INSERT INTO scheduler_change_counter (id, seq) VALUES (1, 0)"))


def downgrade() -> None:
    op.drop_table("scheduler_changes")
    op.drop_table("scheduler_change_counter")

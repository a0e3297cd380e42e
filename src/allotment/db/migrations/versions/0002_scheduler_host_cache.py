"""scheduler host state cache: hosts, aggregates, instances

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scheduler_hosts",
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("host", sa.Unicode(length=255), nullable=False),
        sa.Column("nodename", sa.Unicode(length=255), nullable=False),
        sa.Column("report", sa.Text(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.Unicode(length=255), nullable=True),
        sa.Column("heartbeat", sa.Double(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("uuid", name=op.f("pk_scheduler_hosts")),
        sa.UniqueConstraint("host", "nodename", name=op.f("uq_scheduler_hosts_host_nodename")),
    )
    op.create_table(
        "scheduler_aggregates",
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("name", sa.Unicode(length=255), nullable=False),
        sa.Column("aggregate_metadata", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("uuid", name=op.f("pk_scheduler_aggregates")),
    )
    op.create_table(
        "scheduler_aggregate_hosts",
        sa.Column("aggregate_uuid", sa.String(length=36), nullable=False),
        sa.Column("host", sa.Unicode(length=255), nullable=False),
        sa.PrimaryKeyConstraint(
            "aggregate_uuid", "host", name=op.f("pk_scheduler_aggregate_hosts")
        ),
    )
    with op.batch_alter_table("scheduler_aggregate_hosts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_scheduler_aggregate_hosts_host"), ["host"], unique=False
        )
    op.create_table(
        "scheduler_instances",
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("host", sa.Unicode(length=255), nullable=False),
        sa.Column("info", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("uuid", name=op.f("pk_scheduler_instances")),
    )
    with op.batch_alter_table("scheduler_instances", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_scheduler_instances_host"), ["host"], unique=False)


def downgrade() -> None:
    op.drop_table("scheduler_instances")
    op.drop_table("scheduler_aggregate_hosts")
    op.drop_table("scheduler_aggregates")
    op.drop_table("scheduler_hosts")

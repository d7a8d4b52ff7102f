"""Create the table of optimization runs.

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03

Written by hand. ``optimization_runs`` holds one row per ``client.optimize`` call: the
optimizer and its configuration, the run's status, best score and iteration count, why
it stopped, and the coordinator's last checkpoint (JSON) that a restarted worker
resumes from.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from dspyq.store.migrations.column_types import json_type as _json
from dspyq.store.migrations.column_types import timestamp_type as _timestamp

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "optimization_runs",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("correlation_id", sa.String(length=255), nullable=False),
        sa.Column("optimizer", sa.String(length=255), nullable=False),
        sa.Column("config", _json(), nullable=False),
        sa.Column("program", sa.String(length=255), nullable=False),
        sa.Column("lm", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("best_score", sa.Float(), nullable=True),
        sa.Column("iterations", sa.Integer(), nullable=False),
        sa.Column("stop_reason", sa.String(length=1024), nullable=True),
        sa.Column("checkpoint", _json(), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.Column("finished_at", _timestamp(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled', "
            "'budget_exhausted')",
            name=op.f("ck_optimization_runs_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_optimization_runs")),
    )
    op.create_index(
        op.f("ix_optimization_runs_correlation_id"), "optimization_runs", ["correlation_id"]
    )
    op.create_index(op.f("ix_optimization_runs_status"), "optimization_runs", ["status"])


def downgrade() -> None:
    op.drop_index(op.f("ix_optimization_runs_status"), table_name="optimization_runs")
    op.drop_index(op.f("ix_optimization_runs_correlation_id"), table_name="optimization_runs")
    op.drop_table("optimization_runs")

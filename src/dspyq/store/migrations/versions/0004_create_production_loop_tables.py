"""Create the tables of the production loop; record the version that served each job.

Revision ID: 0004
Revises: 0003
Create Date: 2025-01-04

Written by hand. ``program_aliases`` holds where each alias of a program points (with a
canary's version and share, and a revision for compare-and-set moves), ``deployments``
every run of the deployment pipeline, ``feedback`` the scores users gave jobs,
``alerts`` each threshold crossed per window (once: a unique key), ``program_lineage``
where each saved version came from. ``executions`` gains the program name and version
that served a job started from a saved program.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from dspyq.store.migrations.column_types import big_id_type as _big_id
from dspyq.store.migrations.column_types import id_type as _id
from dspyq.store.migrations.column_types import json_type as _json
from dspyq.store.migrations.column_types import timestamp_type as _timestamp

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("executions", sa.Column("program_name", sa.String(length=255), nullable=True))
    op.add_column("executions", sa.Column("program_version", sa.Integer(), nullable=True))

    op.create_table(
        "program_aliases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("alias", sa.String(length=255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("canary_version", sa.Integer(), nullable=True),
        sa.Column("canary_fraction", sa.Float(), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("deployment_id", _id(), nullable=True),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_program_aliases")),
        sa.UniqueConstraint("name", "alias", name=op.f("uq_program_aliases_name_alias")),
    )

    op.create_table(
        "deployments",
        sa.Column("id", _id(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("alias", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("previous_version", sa.Integer(), nullable=True),
        sa.Column("canary_fraction", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("steps", _json(), nullable=False),
        sa.Column("error", _json(), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("finished_at", _timestamp(), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'canary', 'failed')",
            name=op.f("ck_deployments_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployments")),
    )
    op.create_index(op.f("ix_deployments_name"), "deployments", ["name"])

    op.create_table(
        "feedback",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("task_id", _id(), nullable=False),
        sa.Column("program_name", sa.String(length=255), nullable=True),
        sa.Column("program_version", sa.Integer(), nullable=True),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=True),
        sa.Column("comment", sa.String(length=4096), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback")),
    )
    op.create_index(op.f("ix_feedback_task_id"), "feedback", ["task_id"])
    op.create_index(op.f("ix_feedback_program_name"), "feedback", ["program_name"])

    op.create_table(
        "alerts",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("kind", sa.String(length=255), nullable=False),
        sa.Column("observed", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("window_start", _timestamp(), nullable=False),
        sa.Column("window_end", _timestamp(), nullable=False),
        sa.Column("program_name", sa.String(length=255), nullable=False),
        sa.Column("program_version", sa.Integer(), nullable=False),
        sa.Column("pool", sa.String(length=255), nullable=False),
        sa.Column("details", _json(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint(
            "kind",
            "program_name",
            "program_version",
            "pool",
            "window_start",
            "window_end",
            name=op.f("uq_alerts_window"),
        ),
    )
    op.create_index(op.f("ix_alerts_created_at"), "alerts", ["created_at"])

    op.create_table(
        "program_lineage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("parent_version", sa.Integer(), nullable=True),
        sa.Column("run_id", _id(), nullable=True),
        sa.Column("feedback_ids", _json(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_program_lineage")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_program_lineage_name_version")),
    )


def downgrade() -> None:
    op.drop_table("program_lineage")
    op.drop_index(op.f("ix_alerts_created_at"), table_name="alerts")
    op.drop_table("alerts")
    op.drop_index(op.f("ix_feedback_program_name"), table_name="feedback")
    op.drop_index(op.f("ix_feedback_task_id"), table_name="feedback")
    op.drop_table("feedback")
    op.drop_index(op.f("ix_deployments_name"), table_name="deployments")
    op.drop_table("deployments")
    op.drop_table("program_aliases")
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("program_version")
        batch.drop_column("program_name")

"""Create the tables of distributed evaluations and saved programs.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02

Written by hand. ``evaluations`` holds one row per ``client.evaluate`` call,
``evaluation_rows`` one row per example of it, and ``programs`` every saved version
of a named program (its ProgramSpec JSON), numbered 1, 2, 3... per name.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from dspyq.store.migrations.column_types import big_id_type as _big_id
from dspyq.store.migrations.column_types import id_type as _id
from dspyq.store.migrations.column_types import json_type as _json
from dspyq.store.migrations.column_types import timestamp_type as _timestamp

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "evaluations",
        sa.Column("id", _id(), nullable=False),
        sa.Column("correlation_id", _id(), nullable=False),
        sa.Column("program", sa.String(length=255), nullable=False),
        sa.Column("metric", sa.String(length=255), nullable=False),
        sa.Column("lm", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("finished_at", _timestamp(), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'failed')",
            name=op.f("ck_evaluations_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluations")),
    )
    op.create_index(op.f("ix_evaluations_correlation_id"), "evaluations", ["correlation_id"])

    op.create_table(
        "evaluation_rows",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("evaluation_id", _id(), nullable=False),
        sa.Column("example_index", sa.Integer(), nullable=False),
        sa.Column("task_id", _id(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("error", _json(), nullable=True),
        sa.ForeignKeyConstraint(
            ["evaluation_id"],
            ["evaluations.id"],
            name=op.f("fk_evaluation_rows_evaluation_id_evaluations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluation_rows")),
        sa.UniqueConstraint(
            "evaluation_id",
            "example_index",
            name=op.f("uq_evaluation_rows_evaluation_id_example_index"),
        ),
    )

    op.create_table(
        "programs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=255), nullable=False),
        sa.Column("spec", _json(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("run_id", _id(), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_programs")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_programs_name_version")),
    )


def downgrade() -> None:
    op.drop_table("programs")
    op.drop_table("evaluation_rows")
    op.drop_table("evaluations")

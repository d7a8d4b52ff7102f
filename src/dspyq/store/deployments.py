"""The ``deployments`` table: every run of the deployment pipeline, kept as the alias history.

A row is written when a deployment starts (``running``), each step is appended to its
``steps`` as it ends, and it finishes ``succeeded``, ``canary`` (a share of traffic on
the new version, promotion pending) or ``failed``. Its id is the deployment's
correlation id, so its events and its row are found by the same key.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select, update
from sqlmodel import col

from dspyq.store.columns import utcnow
from dspyq.store.engine import (
    EngineStore,
    read_record,
    read_records,
    where_equal,
    write_transaction,
)
from dspyq.store.models import DeploymentRecord

__all__ = ["DeploymentStore", "finish_deployment"]


class DeploymentStore(EngineStore):
    """Writes and reads deployment rows through ``engine``."""

    def start(self, record: DeploymentRecord) -> DeploymentRecord:
        """Store a new deployment (status ``running``)."""
        with write_transaction(self.engine, f"record deployment {record.id}") as conn:
            conn.execute(DeploymentRecord.__table__.insert().values(**record.model_dump()))  # type: ignore[attr-defined]
        return record

    def add_step(self, deployment_id: str, step: dict[str, Any]) -> None:
        """Append one ended step to the deployment's ``steps``."""
        with write_transaction(self.engine, f"record a step of deployment {deployment_id}") as conn:
            steps = _steps(conn, deployment_id)
            conn.execute(_update(deployment_id).values(steps=[*steps, step]))

    def finish(
        self,
        deployment_id: str,
        status: str,
        *,
        step: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        """End the deployment with ``status`` (and its last ``step``, if given)."""
        with write_transaction(self.engine, f"finish deployment {deployment_id}") as conn:
            finish_deployment(conn, deployment_id, status, step=step, error=error)

    def get(self, deployment_id: str) -> DeploymentRecord | None:
        query = select(DeploymentRecord).where(col(DeploymentRecord.id) == deployment_id)
        return read_record(self.engine, f"read deployment {deployment_id}", DeploymentRecord, query)

    def history(
        self, name: str | None, alias: str | None = None, *, status: str | None = None
    ) -> list[DeploymentRecord]:
        """Deployments of ``name`` (of every program when None; of one alias, of one
        status), newest first."""
        query = where_equal(
            select(DeploymentRecord), DeploymentRecord, name=name, alias=alias, status=status
        )
        query = query.order_by(col(DeploymentRecord.created_at).desc(), col(DeploymentRecord.id))
        return read_records(
            self.engine,
            f"read the deployments of {name or 'every program'!r}",
            DeploymentRecord,
            query,
        )


def finish_deployment(
    conn: Connection,
    deployment_id: str,
    status: str,
    *,
    step: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> None:
    """End a deployment inside the caller's transaction (so an alias move and the end of
    the deployment that made it commit together)."""
    steps = _steps(conn, deployment_id)
    values: dict[str, Any] = {"status": status, "finished_at": utcnow()}
    if step is not None:
        values["steps"] = [*steps, step]
    if error is not None:
        values["error"] = error
    conn.execute(_update(deployment_id).values(**values))


def _steps(conn: Connection, deployment_id: str) -> list[dict[str, Any]]:
    found = conn.execute(
        select(col(DeploymentRecord.steps)).where(col(DeploymentRecord.id) == deployment_id)
    ).scalar()
    return list(found or [])


def _update(deployment_id: str) -> Any:
    return update(DeploymentRecord).where(col(DeploymentRecord.id) == deployment_id)

"""The ``program_aliases`` table: where ``qa@production`` points, moved by compare-and-set.

An alias row holds its version, an optional canary (another version taking a share of
the jobs) and a ``revision``. :meth:`AliasStore.move` writes the new target only if the
row is still at the revision the mover read (or still absent, for a first move), and
ends the deployment that made the move in the same transaction: two deployments racing
for one alias cannot both win, and the loser is told instead of silently overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlmodel import col

from dspyq.store.columns import utcnow
from dspyq.store.deployments import finish_deployment
from dspyq.store.engine import (
    EngineStore,
    dialect_insert,
    read_record,
    read_records,
    write_transaction,
)
from dspyq.store.models import AliasRecord

__all__ = ["AliasMove", "AliasStore"]


@dataclass(frozen=True)
class AliasMove:
    """A new target for an alias, and the deployment that sets it."""

    version: int
    deployment_id: str
    canary_version: int | None = None
    canary_fraction: float | None = None
    status: str = "succeeded"
    """What the deployment ends as: ``succeeded``, or ``canary`` while a canary runs."""
    step: dict[str, Any] | None = None
    """The deployment's last step, recorded with the move."""


class AliasStore(EngineStore):
    """Reads aliases and moves them through ``engine``."""

    def get(self, name: str, alias: str) -> AliasRecord | None:
        query = select(AliasRecord).where(
            col(AliasRecord.name) == name, col(AliasRecord.alias) == alias
        )
        return read_record(self.engine, f"read alias {name}@{alias}", AliasRecord, query)

    def list(self, name: str | None = None) -> list[AliasRecord]:
        """Aliases (of ``name``, or of every program), by name then alias."""
        query = select(AliasRecord).order_by(col(AliasRecord.name), col(AliasRecord.alias))
        if name is not None:
            query = query.where(col(AliasRecord.name) == name)
        return read_records(self.engine, "list aliases", AliasRecord, query)

    def move(
        self, name: str, alias: str, move: AliasMove, *, expected_revision: int | None
    ) -> AliasRecord | None:
        """Point ``name@alias`` at ``move`` if it is still at ``expected_revision``
        (``None``: if it does not exist yet). Returns the new row, or None when another
        move came first (nothing is changed then, and the deployment is not ended)."""
        values: dict[str, Any] = {
            "version": move.version,
            "canary_version": move.canary_version,
            "canary_fraction": move.canary_fraction,
            "deployment_id": move.deployment_id,
            "updated_at": utcnow(),
        }
        with write_transaction(self.engine, f"move alias {name}@{alias}") as conn:
            if expected_revision is None:
                won = (
                    conn.execute(
                        dialect_insert(conn, AliasRecord)
                        .values(name=name, alias=alias, revision=1, **values)
                        .on_conflict_do_nothing(index_elements=["name", "alias"])
                        .returning(col(AliasRecord.id))
                    ).scalar()
                    is not None
                )
            else:
                won = (
                    conn.execute(
                        update(AliasRecord)
                        .where(
                            col(AliasRecord.name) == name,
                            col(AliasRecord.alias) == alias,
                            col(AliasRecord.revision) == expected_revision,
                        )
                        .values(revision=AliasRecord.revision + 1, **values)
                        .returning(col(AliasRecord.id))
                    ).scalar()
                    is not None
                )
            if not won:
                return None
            finish_deployment(conn, move.deployment_id, move.status, step=move.step)
            row = (
                conn.execute(
                    select(AliasRecord).where(
                        col(AliasRecord.name) == name, col(AliasRecord.alias) == alias
                    )
                )
                .mappings()
                .one()
            )
        return AliasRecord.model_validate(dict(row))

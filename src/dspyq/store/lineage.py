"""The ``program_lineage`` table: where each saved version came from.

A version made by an optimization records its parent version, the run that made it and
the feedback rows its trainset was built from; :meth:`LineageStore.chain` walks the
parents back to the first version.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlmodel import col

from dspyq.errors import InputError
from dspyq.store.columns import utcnow
from dspyq.store.engine import (
    EngineStore,
    dialect_insert,
    read_connection,
    read_record,
    write_transaction,
)
from dspyq.store.models import LineageRecord, ProgramRecord
from dspyq.store.resolve import no_such_version

__all__ = ["LineageStore"]


class LineageStore(EngineStore):
    """Records and walks lineage through ``engine``."""

    def record(
        self,
        name: str,
        version: int,
        *,
        parent_version: int | None = None,
        run_id: str | None = None,
        feedback_ids: Sequence[int] = (),
    ) -> bool:
        """Record where ``name`` version ``version`` came from (once: a version's origin
        does not change). True if stored now, False if it was stored already."""
        saved = self._versions(name)
        for which in (version, parent_version):
            if which is not None and which not in saved:
                raise no_such_version(name, which, saved)
        if parent_version is not None and parent_version >= version:
            raise InputError(f"the parent of version {version} must be an older version")
        row = LineageRecord(
            name=name,
            version=version,
            parent_version=parent_version,
            run_id=run_id,
            feedback_ids=[int(each) for each in feedback_ids],
            created_at=utcnow(),
        )
        with write_transaction(self.engine, f"record the lineage of {name}:{version}") as conn:
            inserted = conn.execute(
                dialect_insert(conn, LineageRecord)
                .values(**row.model_dump(exclude={"id"}))
                .on_conflict_do_nothing(index_elements=["name", "version"])
                .returning(col(LineageRecord.id))
            ).scalar()
        return inserted is not None

    def get(self, name: str, version: int) -> LineageRecord | None:
        query = select(LineageRecord).where(
            col(LineageRecord.name) == name, col(LineageRecord.version) == version
        )
        return read_record(
            self.engine, f"read the lineage of {name}:{version}", LineageRecord, query
        )

    def chain(self, name: str, version: int) -> list[LineageRecord]:
        """``version``'s lineage then its parent's, and so on; a version saved without
        any recorded origin ends the chain as a row with no parent."""
        saved = self._versions(name)
        if version not in saved:
            raise no_such_version(name, version, saved)
        chain: list[LineageRecord] = []
        current: int | None = version
        while current is not None and all(link.version != current for link in chain):
            link = self.get(name, current) or LineageRecord(name=name, version=current)
            chain.append(link)
            current = link.parent_version
        return chain

    def _versions(self, name: str) -> list[int]:
        query = (
            select(col(ProgramRecord.version))
            .where(col(ProgramRecord.name) == name)
            .order_by(col(ProgramRecord.version))
        )
        with read_connection(self.engine, f"read the versions of {name!r}") as conn:
            return [int(v) for v in conn.execute(query).scalars()]

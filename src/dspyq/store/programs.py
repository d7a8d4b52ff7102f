"""The ``programs`` table: every saved version of a named program.

A version is the program's :class:`~dspyq.core.program.ProgramSpec` JSON, numbered
1, 2, 3... per name, with the score it reached and the optimization run that made it.
Saved versions are never changed; saving again makes the next version.
"""

from __future__ import annotations

import builtins
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from dspyq.errors import StoreError
from dspyq.store.columns import utcnow
from dspyq.store.engine import EngineStore, read_record, read_records, write_transaction
from dspyq.store.models import ProgramRecord

_SAVE_ATTEMPTS = 5
"""Tries at taking the next version number when other writers take it first."""


class ProgramStore(EngineStore):
    """Saves and reads versions of named programs through ``engine``."""

    def save(
        self,
        name: str,
        kind: str,
        spec: dict[str, Any],
        score: float | None = None,
        run_id: str | None = None,
    ) -> ProgramRecord:
        """Store ``spec`` as the next version of ``name`` and return the new row."""
        for attempt in range(_SAVE_ATTEMPTS):
            try:
                with write_transaction(self.engine, f"save program {name!r}") as conn:
                    latest = conn.execute(
                        select(func.max(ProgramRecord.version)).where(
                            col(ProgramRecord.name) == name
                        )
                    ).scalar()
                    record = ProgramRecord(
                        name=name,
                        version=int(latest or 0) + 1,
                        kind=kind,
                        spec=spec,
                        score=score,
                        run_id=run_id,
                        created_at=utcnow(),
                    )
                    values = record.model_dump(exclude={"id"})
                    inserted = conn.execute(
                        ProgramRecord.__table__.insert().values(**values)  # type: ignore[attr-defined]
                    )
                    key = inserted.inserted_primary_key
                    record.id = None if key is None else int(key[0])
                    return record
            except StoreError as exc:
                # PostgreSQL: a concurrent save took the same version first; SQLite's
                # write lock (BEGIN IMMEDIATE) never lets that happen.
                if not isinstance(exc.__cause__, IntegrityError) or attempt == _SAVE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def get(self, name: str, version: int | None = None) -> ProgramRecord | None:
        """Version ``version`` of ``name`` (the latest when None), or None if there is none."""
        query = select(ProgramRecord).where(col(ProgramRecord.name) == name)
        if version is None:
            query = query.order_by(col(ProgramRecord.version).desc()).limit(1)
        else:
            query = query.where(col(ProgramRecord.version) == version)
        return read_record(self.engine, f"read program {name!r}", ProgramRecord, query)

    def list(self, name: str | None = None) -> builtins.list[ProgramRecord]:
        """Saved versions (of ``name``, or of every program), by name then version."""
        query = select(ProgramRecord).order_by(col(ProgramRecord.name), col(ProgramRecord.version))
        if name is not None:
            query = query.where(col(ProgramRecord.name) == name)
        return read_records(self.engine, "list programs", ProgramRecord, query)

"""Resolve a program reference (``qa@production``, ``qa:3``, ``qa``) to a saved version.

An alias may run a canary: with fraction ``f``, a job goes to the canary version when
:func:`canary_share` of its id is below ``f``. The share is a hash of the job id, so a
job (and its retries) always gets the same answer, and about ``f`` of all jobs get the
canary. Unknown names, versions and aliases raise InputError listing what is saved.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select
from sqlmodel import col

from dspyq.errors import InputError
from dspyq.program_ref import ProgramRef, parse_program_ref
from dspyq.store.aliases import AliasStore
from dspyq.store.engine import read_connection
from dspyq.store.models import AliasRecord, ProgramRecord
from dspyq.store.programs import ProgramStore

__all__ = [
    "ProgramResolver",
    "ResolvedProgram",
    "canary_share",
    "choose_version",
    "no_such_version",
]

_SHOWN_NAMES = 20


@dataclass(frozen=True)
class ResolvedProgram:
    """The saved version a reference resolved to, with its ProgramSpec JSON."""

    name: str
    version: int
    spec: dict[str, Any]
    kind: str
    reference: str
    canary: bool = False

    @classmethod
    def of(cls, record: ProgramRecord, reference: str, canary: bool = False) -> ResolvedProgram:
        return cls(
            name=record.name,
            version=record.version,
            spec=record.spec,
            kind=record.kind,
            reference=reference,
            canary=canary,
        )


def canary_share(job_id: str) -> float:
    """A number in [0, 1) fixed by ``job_id``, spread evenly over job ids."""
    digest = hashlib.sha256(job_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def choose_version(target: AliasRecord, job_id: str | None) -> tuple[int, bool]:
    """(version, is_canary) for a job under ``target``; a job without an id gets the stable one."""
    fraction = target.canary_fraction or 0.0
    if target.canary_version is None or job_id is None or fraction <= 0.0:
        return target.version, False
    if canary_share(job_id) < fraction:
        return target.canary_version, True
    return target.version, False


def no_such_version(name: str, version: int | None, saved: list[int]) -> InputError:
    """The InputError for a version (None: any version) of ``name`` that is not saved."""
    which = "any version" if version is None else f"version {version}"
    listed = f" (saved versions: {saved})" if saved else " (no version of it is saved)"
    return InputError(
        f"No program {name!r} with {which} is saved{listed}",
        context={"name": name, "version": version, "saved": saved},
    )


class ProgramResolver:
    """Looks references up in the store behind ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.programs = ProgramStore(engine)
        self.aliases = AliasStore(engine)

    def resolve(self, reference: str | ProgramRef, job_id: str | None = None) -> ResolvedProgram:
        """The version ``reference`` names for job ``job_id`` (which decides a canary)."""
        ref = parse_program_ref(reference)
        canary = False
        version = ref.version
        if ref.alias is not None:
            version, canary = choose_version(self.target(ref.name, ref.alias), job_id)
        return ResolvedProgram.of(self.record(ref.name, version), str(ref), canary)

    def record(self, name: str, version: int | None = None) -> ProgramRecord:
        """A saved version (the latest when None); InputError listing saved versions if not."""
        found = self.programs.get(name, version)
        if found is None:
            raise self._unknown(name, version)
        return found

    def target(self, name: str, alias: str) -> AliasRecord:
        """The alias row of ``name@alias``; InputError listing the aliases there are if not."""
        found = self.aliases.get(name, alias)
        if found is not None:
            return found
        known = [row.alias for row in self.aliases.list(name)]
        if not known and not self.versions(name):
            raise self._unknown(name, None)
        shown = ", ".join(known) if known else "none: deploy a version first"
        raise InputError(
            f"Program {name!r} has no alias {alias!r} (its aliases: {shown}; "
            f"saved versions: {self.versions(name)})",
            context={"name": name, "alias": alias, "aliases": known},
        )

    def versions(self, name: str) -> list[int]:
        """The saved versions of ``name``, oldest first."""
        return [row.version for row in self.programs.list(name)]

    def _unknown(self, name: str, version: int | None) -> InputError:
        saved = self.versions(name)
        if saved:
            return no_such_version(name, version, saved)
        query = select(col(ProgramRecord.name)).distinct().order_by(col(ProgramRecord.name))
        with read_connection(self.engine, "list program names") as conn:
            names = [str(n) for n in conn.execute(query.limit(_SHOWN_NAMES + 1)).scalars()]
        shown = ", ".join(names[:_SHOWN_NAMES]) + (", ..." if len(names) > _SHOWN_NAMES else "")
        return InputError(
            f"No program named {name!r} is saved (saved programs: {shown or 'none'}); "
            "save one with client.save_program(name, program)",
            context={"name": name, "version": version, "saved": []},
        )

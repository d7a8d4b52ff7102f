"""Named, versioned programs in SQL: save, list, load, and DSPy JSON export/import.

A saved version is the program's :class:`ProgramSpec` (class, constructor arguments,
signatures, learned state), so loading rebuilds the very program that was saved; DSPy's
own JSON state (``program.save``) is the exchange format with DSPy and files.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.engine import Engine

from dspyq.core.module import Module
from dspyq.core.program import program_from_spec, program_to_spec
from dspyq.errors import InputError
from dspyq.program_ref import remember_saved
from dspyq.store.models import ProgramRecord
from dspyq.store.programs import ProgramStore


class ProgramRegistry:
    """Versions of named programs through ``engine``; ``allowed_prefixes`` as for workers."""

    def __init__(self, engine: Engine, allowed_prefixes: Sequence[str] | None = None) -> None:
        self.store = ProgramStore(engine)
        self.allowed_prefixes = allowed_prefixes

    def save(
        self, name: str, program: Module, score: float | None = None, run_id: str | None = None
    ) -> int:
        """Save ``program`` as the next version of ``name``; returns that version (1, 2, ...)."""
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise InputError(
                f"A program name must be a non-empty string of at most 255 characters, "
                f"not {name!r:.80}"
            )
        if not isinstance(program, Module):
            raise InputError(f"save_program() takes a dspyq Module, not {type(program).__name__}")
        spec = program_to_spec(program).model_dump(mode="json")
        record = self.store.save(name, spec["kind"], spec, score=score, run_id=run_id)
        remember_saved(program, name, record.version, spec)
        return record.version

    def list(self, name: str | None = None) -> builtins.list[ProgramRecord]:
        """Saved versions with their scores and runs, by name then version."""
        return self.store.list(name)

    def record(self, name: str, version: int | None = None) -> ProgramRecord:
        """The row of one version (the latest when ``version`` is None)."""
        found = self.store.get(name, version)
        if found is None:
            saved = [r.version for r in self.store.list(name)]
            which = "any version" if version is None else f"version {version}"
            raise InputError(
                f"No program {name!r} with {which} is saved"
                + (f" (saved versions: {saved})" if saved else ""),
                context={"name": name, "version": version, "saved": saved},
            )
        return found

    def load(self, name: str, version: int | None = None) -> Module:
        """The program saved as ``name`` (the latest version by default), rebuilt."""
        record = self.record(name, version)
        program = program_from_spec(record.spec, self.allowed_prefixes)
        remember_saved(program, record.name, record.version, record.spec)
        return program

    def export(self, name: str, version: int | None, path: str | Path) -> Path:
        """Write a saved version's state as DSPy's JSON (``program.save``) to ``path``."""
        target = Path(path)
        self.load(name, version).save(target)
        return target

    def import_state(self, name: str, template: Module, path: str | Path) -> int:
        """Read DSPy's JSON state from ``path`` into a copy of ``template``; save it as a new
        version of ``name`` and return that version. ``template`` itself is not changed."""
        program = template.deepcopy()
        program.load(path)
        return self.save(name, program)

"""References to saved programs, as jobs carry them: ``"qa@production"``, ``"qa:3"``, ``"qa"``.

``qa@production`` is whatever version the alias ``production`` of ``qa`` points to when
the job starts (a canary may send a share of jobs to another version); ``qa:3`` is
version 3; ``qa`` alone is the latest saved version. Parsing is pure (no SQL, no Redis),
so the client checks a reference before sending and the worker parses the same text;
resolving it against the store is :mod:`dspyq.store.resolve`.

A program loaded from (or saved to) the registry remembers which version it is
(:func:`remember_saved`), so a job that carries it whole still records that version
while it is unchanged (:func:`saved_version_of`).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from dspyq.errors import InputError

__all__ = [
    "MAX_NAME_LENGTH",
    "ProgramRef",
    "check_alias",
    "parse_program_ref",
    "remember_saved",
    "saved_version_of",
]

MAX_NAME_LENGTH = 255
"""Longest program name or alias (the width of their SQL columns)."""

_FORMS = "write 'name@alias' (e.g. 'qa@production'), 'name:version' (e.g. 'qa:3') or 'name'"


class ProgramRef(BaseModel):
    """A parsed reference: a name and at most one of ``alias`` / ``version``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    alias: str | None = None
    version: int | None = None

    def __str__(self) -> str:
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        if self.version is not None:
            return f"{self.name}:{self.version}"
        return self.name

    @property
    def kind(self) -> str:
        """``"alias"``, ``"version"`` or ``"latest"``."""
        if self.alias is not None:
            return "alias"
        return "latest" if self.version is None else "version"


def parse_program_ref(text: object) -> ProgramRef:
    """The :class:`ProgramRef` written as ``text``; InputError saying what is wrong if not."""
    if isinstance(text, ProgramRef):
        return text
    if not isinstance(text, str):
        raise InputError(
            f"a program reference is a string, not {type(text).__name__}: {_FORMS}",
            context={"reference": repr(text)[:80]},
        )
    raw = text.strip()
    if "@" in raw:
        name, _, alias = raw.partition("@")
        return ProgramRef(name=_name(name, raw), alias=_alias(alias, raw))
    if ":" in raw:
        name, _, version = raw.partition(":")
        return ProgramRef(name=_name(name, raw), version=_version(version, raw))
    return ProgramRef(name=_name(raw, raw))


def _refused(message: str, raw: str) -> InputError:
    return InputError(
        f"{message} in program reference {raw!r:.80}: {_FORMS}", context={"reference": raw[:255]}
    )


def _name(name: str, raw: str) -> str:
    name = name.strip()
    if not name:
        raise _refused("the program name is empty", raw)
    if len(name) > MAX_NAME_LENGTH:
        raise _refused(f"the program name is longer than {MAX_NAME_LENGTH} characters", raw)
    if any(mark in name for mark in "@:"):
        raise _refused("the program name may not contain '@' or ':'", raw)
    return name


def _alias(alias: str, raw: str) -> str:
    alias = alias.strip()
    if not alias:
        raise _refused("the alias is empty", raw)
    if len(alias) > MAX_NAME_LENGTH or any(mark in alias for mark in "@:"):
        raise _refused(
            f"the alias must be at most {MAX_NAME_LENGTH} characters without '@' or ':'", raw
        )
    return alias


def _version(version: str, raw: str) -> int:
    version = version.strip()
    if not version.isdigit() or int(version) < 1:
        raise _refused(f"the version {version!r} is not a whole number from 1", raw)
    return int(version)


def check_alias(alias: object) -> str:
    """``alias`` stripped, if it can name an alias; InputError if not (empty, too long)."""
    if not isinstance(alias, str):
        raise InputError(f"an alias is a string, not {type(alias).__name__}")
    return _alias(alias, f"?@{alias}")


# Program objects -> (name, version, spec when saved or loaded); a program held nowhere
# else is forgotten with it.
_saved: weakref.WeakKeyDictionary[Any, tuple[str, int, Mapping[str, Any]]] = (
    weakref.WeakKeyDictionary()
)


def remember_saved(program: object, name: str, version: int, spec: Mapping[str, Any]) -> None:
    """``program`` is version ``version`` of ``name``, as long as its spec is ``spec``."""
    with contextlib.suppress(TypeError):  # not weakly referenceable: not remembered
        _saved[program] = (name, version, spec)


def saved_version_of(program: object, spec: Mapping[str, Any]) -> tuple[str, int] | None:
    """(name, version) of the saved version ``program`` is, if its spec is still ``spec``."""
    try:
        found = _saved.get(program)
    except TypeError:
        return None
    if found is None or found[2] != spec:
        return None
    return found[0], found[1]

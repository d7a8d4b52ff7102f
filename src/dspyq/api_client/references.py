"""A client's view of saved programs named by reference: ``"qa@production"``, ``"qa:3"``.

``client.submit("qa@production", ...)`` sends the reference, not the program: the worker
resolves it when the job starts. The client still checks it at the edge, before
anything is sent: the name, version or alias must exist (InputError listing the saved
versions otherwise), and the inputs must fit the version the reference names now (its
signature, its LM for routing, whether it runs as hops). Both lookups are cached: saved
versions never change, and where an alias points is re-read from SQL at most every
:data:`RECHECK_S` seconds (and at once after this client deploys), so a steady stream
of submits costs no SQL round trip per job.

Imported on the first reference a client is given: a client of plain programs never
loads the store.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dspyq.core.module import Module
from dspyq.core.program import program_from_spec
from dspyq.deploy.cache import ProgramCache
from dspyq.program_ref import ProgramRef, parse_program_ref

if TYPE_CHECKING:
    from dspyq.api_client.client import Client

__all__ = ["RECHECK_S", "Referenced", "References", "references_of"]

RECHECK_S = 1.0
"""How stale the client's view of an alias may be (it only checks inputs against it;
the worker decides which version serves the job)."""


@dataclass(frozen=True)
class Referenced:
    """A reference as checked by the client, and the version it names now."""

    ref: ProgramRef
    version: int
    program: Module
    """That version, built (shared: only read, never run, by the client)."""

    @property
    def reference(self) -> str:
        return str(self.ref)

    @property
    def pinned(self) -> str:
        """The reference to the very version (``"qa:3"``), e.g. for a whole evaluation."""
        return f"{self.ref.name}:{self.version}"


class References:
    """Looks references up for one client (thread-safe)."""

    def __init__(self, client: Client) -> None:
        self.allowed_imports = client.settings.allowed_imports
        self.cache = ProgramCache(client.engine, recheck_interval=RECHECK_S)
        self._built: dict[tuple[str, int], Module] = {}
        self._lock = threading.Lock()

    def lookup(self, reference: object) -> Referenced:
        """The version ``reference`` names now; InputError if it names nothing saved."""
        ref = parse_program_ref(reference)
        resolved = self.cache.resolve(ref)
        key = (resolved.name, resolved.version)
        with self._lock:
            program = self._built.get(key)
        if program is None:
            program = program_from_spec(resolved.spec, self.allowed_imports)
            with self._lock:
                self._built.setdefault(key, program)
        return Referenced(ref, resolved.version, program)

    def forget(self, name: str) -> None:
        """Drop what is cached of ``name``'s aliases (this client just moved one)."""
        self.cache.invalidate(name)


_lock = threading.Lock()


def references_of(client: Client) -> References:
    """``client``'s :class:`References`, made on first use."""
    with _lock:
        found: References | None = getattr(client, "_references", None)
        if found is None:
            found = References(client)
            client._references = found
        return found

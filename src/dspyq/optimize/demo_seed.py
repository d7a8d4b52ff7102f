"""The seed DSPy 3.4.1 draws from when one predictor ran several times in a trace.

DSPy seeds ``random.Random`` with the SHA-256 hex digest of the pickle of the
candidate demos as a tuple of ``dspy.Example`` objects. The same digest here, so a
bootstrapped program keeps the same call as DSPy would: the demos are pickled as
objects with an Example's attributes whose class is written under DSPy's name.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["demo_seed"]

_DSPY_EXAMPLE = ("dspy.primitives.example", "Example")


class _Example:
    """Stands in for ``dspy.Example`` in the pickle: same attributes, same order."""

    def __init__(self, store: Mapping[str, Any]) -> None:
        self._store = dict(store)  # a fresh dict per demo, as Example(**fields) makes
        self._demos: list[Any] = []
        self._input_keys = None


class _Pickler(pickle._Pickler):  # the Python pickler: its class references can be rewritten
    def save_global(self, obj: Any, name: str | None = None) -> None:
        if obj is not _Example:
            pickle._Pickler.save_global(self, obj, name)  # type: ignore[attr-defined]
            return
        module, qualname = _DSPY_EXAMPLE
        pickler: Any = self  # these methods of the Python pickler are not in its stubs
        pickler.save(module)
        pickler.save(qualname)
        pickler.write(pickle.STACK_GLOBAL)
        pickler.memoize(obj)


def demo_seed(demos: Sequence[Mapping[str, Any]]) -> str:
    """DSPy's ``Hasher.hash(tuple(dspy.Example(**demo) for demo in demos))``."""
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.DEFAULT_PROTOCOL).dump(tuple(_Example(d) for d in demos))
    return hashlib.sha256(buffer.getvalue()).hexdigest()

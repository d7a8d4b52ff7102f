"""Retrieve: passages for a query from the configured retrieval model (``rm``).

As DSPy 3.4.1's ``dspy.Retrieve``: ``dspyq.configure(rm=...)`` (or ``dspyq.context(rm=...)``)
sets a callable ``rm(query, k=k, **kwargs)`` returning objects with a ``long_text``
(a :class:`dspyq.ColBERTv2` does); ``Retrieve(k)(query)`` returns
``Prediction(passages=[...])``. It is a learnable parameter whose saved state is ``k``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from dspyq.core.callbacks import with_callbacks
from dspyq.core.context import setting
from dspyq.core.example import Prediction
from dspyq.core.module import Parameter


def single_query_passage(passages: list[dict[str, Any]]) -> Prediction:
    """One Prediction from a list of passage dicts: a list per key, ``long_text`` as ``passages``."""
    columns: dict[str, list[Any]] = {key: [] for key in passages[0]}
    for passage in passages:
        for key, value in passage.items():
            columns[key].append(value)
    if "long_text" in columns:
        columns["passages"] = columns.pop("long_text")
    return Prediction(**columns)


class Retrieve(Parameter):
    """``Retrieve(k=3)(query)`` -> ``Prediction(passages=[...])`` from the configured ``rm``."""

    name = "Search"
    input_variable = "query"
    desc = (
        "takes a search query and returns one or more potentially relevant passages from a corpus"
    )

    def __init__(self, k: int = 3, callbacks: list[Any] | None = None) -> None:
        self.stage = random.randbytes(8).hex()
        self.k = k
        self.callbacks = callbacks or []

    def reset(self) -> None:
        pass

    def dump_state(self, json_mode: bool = True) -> dict[str, Any]:
        return {"k": self.k}

    def load_state(self, state: dict[str, Any], allow_unsafe_lm_state: bool = False) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    @with_callbacks
    def __call__(self, *args: Any, **kwargs: Any) -> Prediction:
        return self.forward(*args, **kwargs)

    def forward(self, query: str, k: int | None = None, **kwargs: Any) -> Prediction:
        k = k if k is not None else self.k
        rm = setting("rm")
        if not rm:
            raise AssertionError("No RM is loaded.")
        passages = rm(query, k=k, **kwargs)
        if not isinstance(passages, Iterable):
            passages = [passages]
        return Prediction(passages=[passage.long_text for passage in passages])

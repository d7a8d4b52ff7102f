"""Examples (training and evaluation records) and Predictions (module outputs).

These mirror DSPy's ``dspy.Example`` / ``dspy.Prediction``: a dict you can also read
with attribute access, which remembers which of its keys are inputs so optimizers can
split a labelled record into what the program sees and what the metric checks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from dspyq.errors import InputError

# Keys beginning with this prefix are bookkeeping (e.g. ``dspy_uuid``); DSPy hides them
# from len(), keys(), repr() unless asked for.
_INTERNAL_PREFIX = "dspy_"


def _plain(value: Any) -> Any:
    """Recursively turn Examples and pydantic models into plain Python containers."""
    if isinstance(value, Example):
        return value.toDict()
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_plain(item) for item in value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


class Example:
    """A record of named fields, some of them marked as inputs.

    ``Example(question="2+2?", answer="4").with_inputs("question")`` builds a labelled
    example; ``ex.question`` and ``ex["question"]`` both read a field.
    """

    def __init__(self, base: Example | Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        self._store: dict[str, Any] = {}
        self._demos: list[Any] = []
        self._input_keys: set[str] | None = None
        if isinstance(base, Example):
            self._store = dict(base._store)
            self._input_keys = None if base._input_keys is None else set(base._input_keys)
        elif base is not None:
            self._store = dict(base)
        self._store.update(kwargs)

    # --- attribute and item access ------------------------------------------------

    def __getattr__(self, key: str) -> Any:
        # Only called when normal lookup fails. Dunder lookups (copy, pickle) must see
        # an AttributeError, not a field.
        if key.startswith("__") and key.endswith("__"):
            raise AttributeError(key)
        store = self.__dict__.get("_store")
        if store is not None and key in store:
            return store[key]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{key}'")

    def __setattr__(self, key: str, value: Any) -> None:
        if key.startswith("_") or key in dir(type(self)):
            super().__setattr__(key, value)
        else:
            self._store[key] = value

    def __delattr__(self, key: str) -> None:
        if key in self.__dict__.get("_store", {}):
            del self._store[key]
        else:
            super().__delattr__(key)

    def __getitem__(self, key: str) -> Any:
        return self._store[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._store[key] = value

    def __delitem__(self, key: str) -> None:
        del self._store[key]

    def __contains__(self, key: object) -> bool:
        return key in self._store

    def __len__(self) -> int:
        return len([key for key in self._store if not key.startswith(_INTERNAL_PREFIX)])

    def __iter__(self) -> Iterator[str]:
        return iter(dict(self._store))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Example) and self._store == other._store

    def __hash__(self) -> int:
        return hash(tuple(self._store.items()))

    def __repr__(self) -> str:
        shown = {k: v for k, v in self._store.items() if not k.startswith(_INTERNAL_PREFIX)}
        return f"Example({shown}) (input_keys={self._input_keys})"

    __str__ = __repr__

    # --- dict-like views ----------------------------------------------------------

    def keys(self, include_dspy: bool = False) -> list[str]:
        return [k for k in self._store if include_dspy or not k.startswith(_INTERNAL_PREFIX)]

    def values(self, include_dspy: bool = False) -> list[Any]:
        return [self._store[k] for k in self.keys(include_dspy)]

    def items(self, include_dspy: bool = False) -> list[tuple[str, Any]]:
        return [(k, self._store[k]) for k in self.keys(include_dspy)]

    def get(self, key: str, default: Any = None) -> Any:
        return self._store.get(key, default)

    # --- inputs and labels --------------------------------------------------------

    def with_inputs(self, *keys: str) -> Example:
        """A copy whose ``keys`` are the inputs; every other field is a label."""
        copied = self.copy()
        copied._input_keys = set(keys)
        return copied

    def inputs(self) -> Example:
        """The input fields only (raises if :meth:`with_inputs` was never called)."""
        if self._input_keys is None:
            raise InputError(
                "Inputs have not been set for this example. "
                "Use `example.with_inputs()` to set them."
            )
        kept = {k: v for k, v in self._store.items() if k in self._input_keys}
        result = type(self)(base=kept)
        result._input_keys = set(self._input_keys)
        return result

    def labels(self) -> Example:
        """The non-input fields (the expected outputs a metric compares against)."""
        input_keys = self.inputs().keys()
        return type(self)(base={k: v for k, v in self._store.items() if k not in input_keys})

    # --- copies -------------------------------------------------------------------

    def copy(self, **kwargs: Any) -> Example:
        """A shallow copy, with ``kwargs`` set on it; input keys are kept."""
        return type(self)(base=self, **kwargs)

    def without(self, *keys: str) -> Example:
        """A copy with the named fields removed."""
        copied = self.copy()
        for key in keys:
            copied._store.pop(key, None)
        return copied

    def toDict(self) -> dict[str, Any]:
        """Plain dict of every field; nested Examples and pydantic models become dicts."""
        return {key: _plain(value) for key, value in self._store.items()}

    def to_dict(self) -> dict[str, Any]:
        """Pythonic alias of :meth:`toDict`."""
        return self.toDict()


class Completions:
    """Every completion of one prediction, field by field (``n > 1`` gives several)."""

    def __init__(
        self,
        list_or_dict: Sequence[Mapping[str, Any]] | Mapping[str, list[Any]],
        signature: Any = None,
    ) -> None:
        self.signature = signature
        columns: dict[str, list[Any]] = {}
        if isinstance(list_or_dict, Mapping):
            for key, column in list_or_dict.items():
                if not isinstance(column, list):
                    raise TypeError(f"Completions field {key!r} must be a list of values")
                columns[key] = list(column)
        else:
            for position, completion in enumerate(list_or_dict):
                for key, value in completion.items():
                    # A field missing from earlier completions would shift rows; pad it.
                    columns.setdefault(key, [None] * position).append(value)
                for column in columns.values():
                    if len(column) == position:
                        column.append(None)
        lengths = {len(column) for column in columns.values()}
        if len(lengths) > 1:
            raise ValueError("All completion fields must have the same number of values")
        self._completions = columns

    def items(self) -> Iterator[tuple[str, list[Any]]]:
        return iter(self._completions.items())

    def keys(self) -> list[str]:
        return list(self._completions)

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, int):
            size = len(self)
            if key < -size or key >= size:
                raise IndexError("completion index out of range")
            return Prediction(**{k: column[key] for k, column in self._completions.items()})
        return self._completions[key]

    def __getattr__(self, name: str) -> list[Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        completions = self.__dict__.get("_completions", {})
        if name in completions:
            column: list[Any] = completions[name]
            return column
        raise AttributeError(f"'Completions' object has no attribute '{name}'")

    def __len__(self) -> int:
        return len(next(iter(self._completions.values()), []))

    def __contains__(self, key: object) -> bool:
        return key in self._completions

    def __repr__(self) -> str:
        body = ",\n    ".join(f"{k}={v!r}" for k, v in self._completions.items())
        return f"Completions(\n    {body}\n)"

    __str__ = __repr__


class Prediction(Example):
    """What a module returns: the first completion's fields, plus all completions.

    Arithmetic and comparisons use the ``score`` field, so metric results that are
    Predictions can be summed and averaged like floats (as in DSPy).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._completions: Completions | None = None
        self._lm_usage: dict[str, Any] | None = None

    @classmethod
    def from_completions(
        cls,
        list_or_dict: Sequence[Mapping[str, Any]] | Mapping[str, list[Any]],
        signature: Any = None,
    ) -> Prediction:
        """Build a Prediction whose fields are the first completion's values."""
        prediction = cls()
        prediction._completions = Completions(list_or_dict, signature=signature)
        prediction._store = {k: column[0] for k, column in prediction._completions.items()}
        return prediction

    @property
    def completions(self) -> Completions | None:
        return self._completions

    def get_lm_usage(self) -> dict[str, Any] | None:
        """Token usage per LM model for the call that produced this prediction, if tracked."""
        return self._lm_usage

    def set_lm_usage(self, value: dict[str, Any] | None) -> None:
        self._lm_usage = value

    def __repr__(self) -> str:
        body = ",\n    ".join(f"{k}={v!r}" for k, v in self._store.items())
        if self._completions is None or len(self._completions) <= 1:
            return f"Prediction(\n    {body}\n)"
        omitted = len(self._completions) - 1
        return (
            f"Prediction(\n    {body},\n    completions=Completions(...)\n) "
            f"({omitted} completions omitted)"
        )

    __str__ = __repr__

    # --- numeric behaviour through the ``score`` field ------------------------------

    def __float__(self) -> float:
        if "score" not in self._store:
            raise ValueError("Prediction has no 'score' field to convert to float")
        return float(self._store["score"])

    def __add__(self, other: object) -> float:
        if isinstance(other, int | float):
            return float(self) + other
        if isinstance(other, Prediction):
            return float(self) + float(other)
        return NotImplemented

    def __radd__(self, other: object) -> float:
        if isinstance(other, int | float):
            return other + float(self)
        return NotImplemented

    def __truediv__(self, other: object) -> float:
        if isinstance(other, int | float):
            return float(self) / other
        if isinstance(other, Prediction):
            return float(self) / float(other)
        return NotImplemented

    def __rtruediv__(self, other: object) -> float:
        if isinstance(other, int | float):
            return other / float(self)
        return NotImplemented

    def __lt__(self, other: object) -> bool:
        if isinstance(other, int | float | Prediction):
            return float(self) < float(other)
        return NotImplemented

    def __le__(self, other: object) -> bool:
        if isinstance(other, int | float | Prediction):
            return float(self) <= float(other)
        return NotImplemented

    def __gt__(self, other: object) -> bool:
        if isinstance(other, int | float | Prediction):
            return float(self) > float(other)
        return NotImplemented

    def __ge__(self, other: object) -> bool:
        if isinstance(other, int | float | Prediction):
            return float(self) >= float(other)
        return NotImplemented

    __hash__ = Example.__hash__

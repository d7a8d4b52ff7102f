"""Signature fields: ``InputField``/``OutputField`` and the DSPy metadata they carry.

The metadata lives in ``FieldInfo.json_schema_extra`` exactly where DSPy 3.4.1 keeps it
(``__dspy_field_type``, ``desc``, ``prefix``, ``constraints``, ``IS_TYPE_UNDEFINED``),
because saved programs and prompts depend on it.
"""

from __future__ import annotations

import inspect
import re
import warnings
from typing import Any, Literal

import pydantic
from pydantic.fields import FieldInfo

from dspyq.errors import SignatureError

FieldRole = Literal["input", "output"]

# Keys of InputField/OutputField kwargs that are DSPy metadata, not pydantic options.
_DSPY_FIELD_KEYS = ("desc", "prefix", "format", "parser", "__dspy_field_type", "IS_TYPE_UNDEFINED")

# Pydantic constraints and how DSPy labels them on the "Constraints:" line.
_CONSTRAINT_LABELS = {
    "gt": "greater than",
    "ge": "greater than or equal to",
    "lt": "less than",
    "le": "less than or equal to",
    "min_length": "minimum length",
    "max_length": "maximum length",
    "multiple_of": "a multiple of the given number",
    "allow_inf_nan": "allow 'inf', '-inf', 'nan' values",
}

_DEPRECATED_FIELD_KEYS = ("prefix", "format", "parser")


def describe_constraints(**kwargs: Any) -> str:
    """The constraint line DSPy shows for a field, in the order given (``""`` when none)."""
    return ", ".join(
        f"{_CONSTRAINT_LABELS[key]}: {value}"
        for key, value in kwargs.items()
        if key in _CONSTRAINT_LABELS
    )


def _warn_deprecated(kwargs: dict[str, Any]) -> None:
    for key in _DEPRECATED_FIELD_KEYS:
        if key in kwargs:
            warnings.warn(
                f"The '{key}' argument in InputField/OutputField is deprecated and has no effect "
                "in DSPy. It will be removed in a future version.",
                DeprecationWarning,
                stacklevel=4,
            )


_PYDANTIC_FIELD_KEYS = frozenset(inspect.signature(pydantic.Field).parameters) - {"extra"}


def _field(role: FieldRole, kwargs: dict[str, Any]) -> Any:
    _warn_deprecated(kwargs)
    extra: dict[str, Any] = {}
    pydantic_kwargs: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key in _DSPY_FIELD_KEYS:
            extra[key] = value
        elif key in _PYDANTIC_FIELD_KEYS:
            pydantic_kwargs[key] = value
        else:
            raise SignatureError(
                f"Unknown option `{key}` for an {role} field: use desc=, prefix= or a pydantic "
                "Field option such as ge=, le=, min_length=, default=."
            )
    extra["__dspy_field_type"] = role
    if "description" in kwargs and "desc" not in extra:
        extra["desc"] = kwargs["description"]
    constraints = describe_constraints(**kwargs)
    if constraints:
        extra["constraints"] = constraints
    try:
        return pydantic.Field(json_schema_extra=extra, **pydantic_kwargs)
    except (TypeError, ValueError) as exc:
        raise SignatureError(f"Invalid option for an {role} field: {exc}") from exc


def InputField(**kwargs: Any) -> Any:
    """Declare an input field: ``desc=``, ``prefix=`` and any pydantic constraint (``ge=``, ...)."""
    return _field("input", kwargs)


def OutputField(**kwargs: Any) -> Any:
    """Declare an output field: ``desc=``, ``prefix=`` and any pydantic constraint (``ge=``, ...)."""
    return _field("output", kwargs)


def infer_prefix(name: str) -> str:
    """Turn a field name into DSPy's display prefix: ``search_query`` -> ``Search Query``.

    camelCase is split, letters and digits are separated (``text2number`` ->
    ``Text 2 Number``) and all-caps words (acronyms) are kept as they are.
    """
    snake = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", snake)
    snake = re.sub(r"([a-zA-Z])(\d)", r"\1_\2", snake)
    snake = re.sub(r"(\d)([a-zA-Z])", r"\1_\2", snake)
    return " ".join(word if word.isupper() else word.capitalize() for word in snake.split("_"))


def field_role(field: FieldInfo) -> str | None:
    """``"input"``/``"output"`` for a signature field, None for anything else."""
    extra = field.json_schema_extra
    if isinstance(extra, dict):
        role = extra.get("__dspy_field_type")
        return role if isinstance(role, str) else None
    return None


def field_extra(field: FieldInfo) -> dict[str, Any]:
    """The DSPy metadata dict of a signature field."""
    extra = field.json_schema_extra
    return extra if isinstance(extra, dict) else {}

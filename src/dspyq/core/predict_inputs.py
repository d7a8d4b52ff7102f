"""How Predict treats the inputs it is called with, as DSPy 3.4.1 does in-process.

DSPy never refuses inputs: missing defaults are filled in, and extra, mistyped or
missing fields only log a warning before the LM is called. dspyq does the same
in-process; strict validation (``Signature.validate_inputs``) happens at the queue
edge instead, where a job would otherwise fail late on a worker.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Mapping
from typing import Any, Literal, Union, get_args, get_origin

from pydantic_core import PydanticUndefined

from dspyq.core.signature import Signature, field_extra
from dspyq.core.types import allows_none
from dspyq.errors import InputError

logger = logging.getLogger(__name__)

TYPE_UNDEFINED = "IS_TYPE_UNDEFINED"
"""Field metadata key marking a field declared without a type (DSPy's name for it)."""


class PositionalArgumentsError(InputError, ValueError):
    """Predict was called with positional arguments (a ValueError, as in DSPy)."""


def positional_arguments_error(module: str, signature: type[Signature]) -> PositionalArgumentsError:
    names = list(signature.input_fields)
    example = names[0] if names else "field"
    return PositionalArgumentsError(
        f"Positional arguments are not allowed when calling `{module}`, must use keyword arguments "
        f"that match your signature input fields: '{', '.join(names)}'. For example: "
        f"`predict({example}=input_value, ...)`."
    )


def type_name(annotation: Any) -> str:
    """An annotation's name as the type-mismatch warning writes it."""
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is None:
        name = getattr(annotation, "__name__", None)
        return name if isinstance(name, str) else str(annotation)
    if origin is Literal:
        return f"Literal[{', '.join(repr(arg) for arg in args)}]"
    origin_name = getattr(origin, "__name__", str(origin))
    if args:
        rendered = ", ".join("..." if arg is ... else type_name(arg) for arg in args)
        return f"{origin_name}[{rendered}]"
    return str(origin_name)


def _fits_items(value: Any, kind: Any, item_type: Any) -> bool:
    return isinstance(value, kind) and all(fits(item, item_type) for item in value)


def fits(value: Any, expected: Any) -> bool:
    """Whether ``value`` is of type ``expected`` (strict isinstance checks, recursively)."""
    if expected is Any:
        return True
    origin = get_origin(expected)
    args = get_args(expected)
    if origin is Union or origin is types.UnionType:
        return any(fits(value, arg) for arg in args)
    if origin is Literal:
        return value in args
    if origin in (list, set, frozenset):
        return _fits_items(value, origin, args[0]) if args else isinstance(value, origin)
    if origin is dict:
        if not isinstance(value, dict):
            return False
        if not args:
            return True
        return all(fits(k, args[0]) and fits(v, args[1]) for k, v in value.items())
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(fits(item, args[0]) for item in value)
        if args and len(value) != len(args):
            return False
        return all(fits(item, arg) for item, arg in zip(value, args, strict=False))
    if isinstance(expected, type):
        return isinstance(value, expected)
    return False


def prepare_inputs(signature: type[Signature], kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with input defaults filled in; warns about extra, mistyped and missing fields."""
    inputs = dict(kwargs)
    fields = signature.input_fields
    for name, field in fields.items():
        if name not in inputs and field.default is not PydanticUndefined:
            inputs[name] = field.default
    extra = [name for name in inputs if name not in fields]
    if extra:
        logger.warning(
            "Input contains fields not in signature. These fields will be ignored: %s. "
            "Expected fields: %s.",
            extra,
            list(fields),
        )
    for name, field in fields.items():
        if name not in inputs:
            continue
        value = inputs[name]
        if value is None or field_extra(field).get(TYPE_UNDEFINED, False):
            continue
        text_list = field.annotation is str and isinstance(value, list)
        if not (text_list and all(isinstance(item, str) for item in value)) and not fits(
            value, field.annotation
        ):
            logger.warning(
                "Type mismatch for field '%s': expected %s based on given Signature, "
                "but the provided value is incompatible: %s.",
                name,
                type_name(field.annotation),
                value,
            )
    missing = [n for n, f in fields.items() if n not in inputs and not allows_none(f.annotation)]
    if missing:
        present = [name for name in fields if name in inputs]
        logger.warning(
            "Not all input fields were provided to module. Present: %s. Missing: %s.",
            present,
            missing,
        )
    return inputs


def generation_config(config: dict[str, Any], lm: Any) -> dict[str, Any]:
    """``config`` with temperature raised to 0.7 when several completions are asked for cold."""
    defaults: Mapping[str, Any] = getattr(lm, "kwargs", {}) or {}
    temperature = config.get("temperature") or defaults.get("temperature")
    n = config.get("n") or defaults.get("n") or defaults.get("num_generations") or 1
    if (temperature is None or temperature <= 0.15) and n > 1:
        config = {**config, "temperature": 0.7}
    return config

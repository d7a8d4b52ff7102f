"""Strict input validation, used at the queue edge (``Client.submit``/``map``/``evaluate``).

In-process, dspyq behaves as DSPy 3.4.1 and only warns (see ``predict_inputs``); a
job sent to a worker is checked here first, so bad inputs fail at once and not late.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, get_args

import pydantic

from dspyq.core.types import annotation_name, type_adapter
from dspyq.errors import InputError

if TYPE_CHECKING:
    from dspyq.core.signature import Signature


def validate_inputs(signature: type[Signature], inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Check that every required input is present and of its declared type.

    Returns the inputs unchanged (as a new dict): values are not coerced, so the
    prompt shows exactly what was given. ``str`` fields accept any value, as in
    DSPy (a list given to a str field is rendered as a numbered list).
    """
    for name, field in signature.input_fields.items():
        if name not in inputs:
            if field.is_required() and not _allows_none(field.annotation):
                raise InputError(
                    f"Missing input field `{name}` for signature `{signature.signature}`.",
                    context={"field": name, "signature": signature.signature},
                )
            continue
        problem = _type_problem(field.annotation, inputs[name])
        if problem is not None:
            raise InputError(
                f"Input field `{name}` expects {annotation_name(field.annotation)}: {problem}",
                context={"field": name, "signature": signature.signature},
            )
    return dict(inputs)


def _allows_none(annotation: Any) -> bool:
    return annotation is None or type(None) in get_args(annotation)


def _type_problem(annotation: Any, value: Any) -> str | None:
    """Why ``value`` does not fit ``annotation`` (pydantic lax mode), or None if it fits."""
    if annotation is str or annotation is Any:
        return None
    try:
        type_adapter(annotation).validate_python(value)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {"msg": str(exc)}
        return f"{first['msg']} (got {type(value).__name__} {value!r:.200})"
    return None

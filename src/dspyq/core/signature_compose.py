"""Signature composition and adaptation (the original design's ``compose_signatures`` and
``adapt_signature_for_context``).

- :func:`compose` merges several signatures into one: inputs first, then outputs, each
  in order of first appearance; a name shared by two signatures must have the same role
  and type, else a :class:`SignatureError` names both fields. Instructions are the
  signatures' own instructions, each once, joined by blank lines (a signature left with
  DSPy's default "Given the fields ..." text contributes none).
- :func:`adapt_signature` applies a described change for a context (new instructions,
  added or removed fields, new descriptions) and records ``signature_adapted``, or
  ``signature_adaptation_failed`` before raising.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic.fields import FieldInfo

from dspyq.core.observe import emit
from dspyq.core.signature import (
    InputField,
    OutputField,
    Signature,
    default_instructions,
    ensure_signature,
    make_signature,
)
from dspyq.core.signature_fields import field_role
from dspyq.errors import SignatureError

__all__ = ["ADAPTATION_KEYS", "adapt_signature", "compose"]

SIGNATURE_ADAPTED = "signature_adapted"
SIGNATURE_ADAPTATION_FAILED = "signature_adaptation_failed"
ADAPTATION_KEYS = frozenset(
    {
        "type",
        "instructions",
        "append_instructions",
        "add_inputs",
        "add_outputs",
        "remove_fields",
        "field_descriptions",
    }
)


def _own_instructions(signature: type[Signature]) -> str:
    text = signature.instructions.strip()
    default = default_instructions(list(signature.input_fields), list(signature.output_fields))
    return "" if text == default.strip() else text


def _describe(owner: str, name: str, annotation: Any, role: str) -> str:
    return f"{owner}.{name} ({role}, {getattr(annotation, '__name__', repr(annotation))})"


def compose(*signatures: str | type[Signature], name: str = "ComposedSignature") -> type[Signature]:
    """One signature with the fields and instructions of all of ``signatures``."""
    if not signatures:
        raise SignatureError("compose() needs at least one signature.")
    classes = [ensure_signature(signature) for signature in signatures]
    merged: dict[str, tuple[Any, FieldInfo, str, str]] = {}  # name -> (type, field, role, owner)
    instructions: list[str] = []
    for position, signature in enumerate(classes):
        owner = f"{signature.__name__}#{position + 1}"
        for field_name, field in signature.fields.items():
            role = str(field_role(field))
            seen = merged.get(field_name)
            if seen is None:
                merged[field_name] = (field.annotation, field, role, owner)
                continue
            if seen[2] != role or seen[0] != field.annotation:
                first = _describe(seen[3], field_name, seen[0], seen[2])
                second = _describe(owner, field_name, field.annotation, role)
                raise SignatureError(
                    f"Cannot compose signatures: {first} conflicts with {second}.",
                    context={"field": field_name, "first": first, "second": second},
                )
        text = _own_instructions(signature)
        if text and text not in instructions:
            instructions.append(text)
    ordered = [item for item in merged.items() if item[1][2] == "input"]
    ordered += [item for item in merged.items() if item[1][2] == "output"]
    fields = {field_name: (spec[0], spec[1]) for field_name, spec in ordered}
    return make_signature(fields, "\n\n".join(instructions) or None, signature_name=name)


def _new_field(role: str, spec: Any) -> tuple[Any, FieldInfo]:
    """``str``, ``(type, "description")`` or ``(type, FieldInfo)`` as a field of ``role``."""
    make = InputField if role == "input" else OutputField
    if isinstance(spec, tuple) and len(spec) == 2:
        annotation, extra = spec
        if isinstance(extra, FieldInfo):
            return annotation, extra
        return annotation, make(desc=str(extra))
    return spec, make()


def _apply(base: type[Signature], context: Mapping[str, Any]) -> tuple[type[Signature], list[str]]:
    unknown = sorted(set(context) - ADAPTATION_KEYS)
    if unknown:
        raise SignatureError(
            f"Unknown adaptation keys {unknown}; expected some of {sorted(ADAPTATION_KEYS)}."
        )
    adapted, applied = base, []
    for field_name in context.get("remove_fields", ()):
        if field_name not in adapted.fields:
            raise SignatureError(
                f"Cannot remove `{field_name}`: {base.__name__} has no such field."
            )
        adapted = adapted.delete(field_name)
        applied.append(f"remove:{field_name}")
    for role, key in (("input", "add_inputs"), ("output", "add_outputs")):
        for field_name, spec in dict(context.get(key, {})).items():
            if field_name in adapted.fields:
                raise SignatureError(f"Cannot add `{field_name}`: the signature already has it.")
            annotation, field = _new_field(role, spec)
            adapted = adapted.append(field_name, field, type_=annotation)
            applied.append(f"add_{role}:{field_name}")
    for field_name, description in dict(context.get("field_descriptions", {})).items():
        if field_name not in adapted.fields:
            raise SignatureError(
                f"Cannot describe `{field_name}`: the signature has no such field."
            )
        adapted = adapted.with_updated_fields(field_name, desc=str(description))
        applied.append(f"describe:{field_name}")
    if "instructions" in context:
        adapted = adapted.with_instructions(str(context["instructions"]))
        applied.append("instructions")
    if context.get("append_instructions"):
        text = f"{adapted.instructions}\n\n{context['append_instructions']}"
        adapted = adapted.with_instructions(text)
        applied.append("append_instructions")
    return adapted, applied


def adapt_signature(
    signature: str | type[Signature], context: Mapping[str, Any]
) -> type[Signature]:
    """``signature`` changed as ``context`` describes (keys: :data:`ADAPTATION_KEYS`)."""
    base = ensure_signature(signature)
    context_type = str(context.get("type", "")) if isinstance(context, Mapping) else ""
    try:
        if not isinstance(context, Mapping):
            raise SignatureError(f"A context is a mapping of adaptations, not {context!r}.")
        adapted, applied = _apply(base, context)
    except SignatureError as exc:
        emit(
            SIGNATURE_ADAPTATION_FAILED,
            {"base_signature": base.signature, "context_type": context_type, "reason": str(exc)},
        )
        raise
    emit(
        SIGNATURE_ADAPTED,
        {
            "base_signature": base.signature,
            "adapted_signature": adapted.signature,
            "adaptations": applied,
            "context_type": context_type,
        },
    )
    return adapted

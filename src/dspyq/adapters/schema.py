"""Type notes for output placeholders, and the structured-output model JSONAdapter sends.

The note after an output placeholder tells the LM what shape to produce
(``{answer}        # note: the value you produce must be a single int value``). Types
without a short note get their pydantic JSON schema, keys sorted with ``type`` first
at every level, as DSPy 3.4.1 prints it.
"""

from __future__ import annotations

import copy
import enum
import json
from typing import Any, Literal, get_args, get_origin

import pydantic
from pydantic.fields import FieldInfo

from dspyq.core.signature import Signature, field_role
from dspyq.core.text_types import Code, Reasoning
from dspyq.core.types import type_adapter

_NOTE_INDENT = " " * 8


def type_first_sorted(value: Any) -> Any:
    """Sort mapping keys recursively, with ``type`` always first (easier for LMs to follow)."""
    if isinstance(value, dict):
        ordered = sorted(value.items(), key=lambda item: (item[0] != "type", item[0]))
        return {key: type_first_sorted(item) for key, item in ordered}
    if isinstance(value, list):
        return [type_first_sorted(item) for item in value]
    return value


def output_type_note(annotation: Any) -> str:
    """The note for an output of this type, without the ``# note:`` lead-in ("" for str)."""
    if annotation is str or annotation is Reasoning:
        return ""
    if annotation is bool:
        return "must be True or False"
    if annotation in (int, float):
        return f"must be a single {annotation.__name__} value"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return f"must be one of: {'; '.join(str(member.value) for member in annotation)}"
    if get_origin(annotation) is Literal:
        choices = "; ".join(str(choice) for choice in get_args(annotation))
        return f"must exactly match (no extra characters) one of: {choices}"
    if isinstance(annotation, type) and issubclass(annotation, Code) and annotation.description():
        return ""  # its type description in the system message already says it all
    schema = type_first_sorted(type_adapter(annotation).json_schema())
    return f"must adhere to the JSON schema: {json.dumps(schema, ensure_ascii=False)}"


def field_placeholder(name: str, field: FieldInfo) -> str:
    """``{name}`` plus, for outputs, the type note (as shown in the system message)."""
    note = "" if field_role(field) == "input" else output_type_note(field.annotation)
    if not note:
        return f"{{{name}}}"
    return f"{{{name}}}{_NOTE_INDENT}# note: the value you produce {note}"


def has_open_ended_mapping(signature: type[Signature]) -> bool:
    """Whether an output is a ``dict[...]``, which structured outputs cannot describe."""
    return any(get_origin(f.annotation) is dict for f in signature.output_fields.values())


def _close_objects(schema: dict[str, Any]) -> None:
    """Make every object strict: all properties required, no extra keys, no defaults."""
    if schema.get("type") == "object":
        properties = schema.get("properties")
        if properties is None:
            schema["properties"] = {}
            schema["required"] = []
        else:
            schema["required"] = list(properties)
            for sub_schema in properties.values():
                if isinstance(sub_schema, dict):
                    sub_schema.pop("default", None)
                    _close_objects(sub_schema)
        schema["additionalProperties"] = False
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        _close_objects(schema["items"])
    for key in ("$defs", "definitions"):
        for definition in schema.get(key, {}).values():
            _close_objects(definition)


def structured_output_model(signature: type[Signature]) -> type[pydantic.BaseModel]:
    """A model ``DSPyProgramOutputs`` of the outputs, whose JSON schema is strict.

    Raises ``ValueError`` for open-ended dict outputs (the caller then uses JSON mode).
    """
    if has_open_ended_mapping(signature):
        raise ValueError("An open-ended dict output cannot be described by a strict schema.")
    fields: dict[str, Any] = {
        name: (field.annotation, field.default) for name, field in signature.output_fields.items()
    }
    model = pydantic.create_model(
        "DSPyProgramOutputs", __config__=pydantic.ConfigDict(extra="forbid"), **fields
    )
    schema = model.model_json_schema()
    _close_objects(schema)

    def strict_schema(*_args: Any, **_kwargs: Any) -> dict[str, Any]:
        return copy.deepcopy(schema)

    # Providers read the schema from the class; serve the strict one.
    model.model_json_schema = strict_schema
    return model

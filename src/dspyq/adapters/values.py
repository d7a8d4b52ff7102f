"""How field values are written into prompts and read back from completions (DSPy 3.4.1 rules).

Writing: a list given to a ``str`` field becomes a numbered list of ``«...»`` blobs;
anything else goes through pydantic's JSON mode, dicts and lists are dumped as compact
JSON and every other value is ``str()``-ed (so strings are never quoted).

Reading: ``str`` is taken as-is, Enums match by value then name, Literals match
exactly or after stripping a ``Literal[...]`` wrapper and quotes; everything else is
repaired with json_repair (falling back to ``ast.literal_eval``, then the raw text)
and validated by pydantic in lax mode.
"""

from __future__ import annotations

import ast
import enum
import json
import types
from typing import Any, Literal, Union, cast, get_args, get_origin

import json_repair
import pydantic
from pydantic.fields import FieldInfo

from dspyq.core.custom_types import Type
from dspyq.core.types import type_adapter


def serialize_for_json(value: Any) -> Any:
    """``value`` in JSON-compatible form (pydantic JSON mode), or ``str(value)`` if it has none."""
    try:
        # Nested values pydantic cannot serialise are str()-ed in place, as DSPy does.
        return type_adapter(type(value)).dump_python(value, mode="json", fallback=str)
    except Exception:  # a value pydantic cannot handle at all is shown by its str()
        return str(value)


def _format_blob(blob: Any) -> str:
    # Items are expected to be str: like DSPy, other items raise TypeError here.
    if "\n" not in blob and "«" not in blob and "»" not in blob:
        return f"«{blob}»"
    indented = blob.replace("\n", "\n    ")
    return f"«««\n    {indented}\n»»»"


def _format_list_for_text_field(items: list[Any]) -> str:
    if not items:
        return "N/A"
    if len(items) == 1:
        return _format_blob(items[0])
    return "\n".join(f"[{index}] {_format_blob(item)}" for index, item in enumerate(items, 1))


def format_field_value(field: FieldInfo, value: Any) -> str:
    """The text a field's value takes in a prompt."""
    if isinstance(value, list) and field.annotation is str:
        return _format_list_for_text_field(value)
    jsonable = serialize_for_json(value)
    if isinstance(jsonable, dict | list):
        return json.dumps(jsonable, ensure_ascii=False)
    return str(jsonable)


def _enum_member(enum_cls: type[enum.Enum], identifier: Any) -> enum.Enum:
    for member in enum_cls:
        if member.value == identifier:
            return member
    if identifier in enum_cls.__members__:  # an unhashable identifier raises TypeError, as in DSPy
        return enum_cls[identifier]
    raise ValueError(f"{identifier} is not a valid name or value for the enum {enum_cls.__name__}")


def _literal_match(annotation: Any, value: Any) -> tuple[bool, Any]:
    """(matched, member); when not matched, the value with any wrapper and quotes removed."""
    allowed = get_args(annotation)
    if value in allowed:
        return True, value
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("Literal[", "str[")) and text.endswith("]"):
            text = text[text.index("[") + 1 : -1]
        if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":
            text = text[1:-1]
        if text in allowed:
            return True, text
        return False, text
    return False, value


def parse_value(value: Any, annotation: Any) -> Any:
    """Turn a completion's text (or a JSON value) into a value of ``annotation``.

    Raises ``ValueError`` or ``pydantic.ValidationError`` when it does not fit.
    """
    if annotation is str:
        return str(value)
    if isinstance(annotation, enum.EnumMeta):
        return _enum_member(cast(type[enum.Enum], annotation), value)
    origin = get_origin(annotation)
    if origin is Literal:
        matched, value = _literal_match(annotation, value)
        if matched:
            return value
    if not isinstance(value, str):
        return type_adapter(annotation).validate_python(value)
    args = get_args(annotation)
    if origin in (Union, types.UnionType) and str in args and type(None) in args:
        return type_adapter(annotation).validate_python(value)
    candidate = json_repair.loads(value)  # "" when nothing JSON-like was found
    if candidate == "" and value != "":
        try:
            candidate = ast.literal_eval(value)
        except (ValueError, SyntaxError):  # other errors propagate, as in DSPy
            candidate = value
    try:
        return type_adapter(annotation).validate_python(candidate)
    except pydantic.ValidationError:
        if not (isinstance(annotation, type) and issubclass(annotation, Type)):
            raise
        # A custom type may parse its own raw text (e.g. Code from a fenced block); as
        # in DSPy, the first error is the one raised when that fails too.
        try:
            return type_adapter(annotation).validate_python(value)
        except pydantic.ValidationError:
            pass
        raise

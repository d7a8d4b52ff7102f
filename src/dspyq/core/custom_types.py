"""``Type``: the base of DSPy-style custom field types (``Image``, ``Audio``, ``Code`` ...).

A custom type renders itself as OpenAI content parts (``format()``). Inside a prompt's
text it is written as those parts between two reserved markers; once the messages are
built, each user message holding a marker is split into content parts (text around
the markers, the parts in between), exactly as DSPy 3.4.1 does.
"""

from __future__ import annotations

import json
import re
from typing import Any, get_args, get_origin

import json_repair
import pydantic

CUSTOM_TYPE_START_IDENTIFIER = "<<CUSTOM-TYPE-START-IDENTIFIER>>"
CUSTOM_TYPE_END_IDENTIFIER = "<<CUSTOM-TYPE-END-IDENTIFIER>>"
_MARKED = re.compile(
    rf"{re.escape(CUSTOM_TYPE_START_IDENTIFIER)}(.*?){re.escape(CUSTOM_TYPE_END_IDENTIFIER)}",
    re.DOTALL,
)


class Type(pydantic.BaseModel):
    """Base of custom field types: subclasses implement :meth:`format`.

    ``format`` returns a list of OpenAI content parts (or a plain string, written as is).
    """

    def format(self) -> list[dict[str, Any]] | str:
        raise NotImplementedError

    @classmethod
    def description(cls) -> str:
        """Text added to the field's description in the system message ("" for none)."""
        return ""

    @classmethod
    def extract_custom_type_from_annotation(cls, annotation: Any) -> list[type[Type]]:
        """Every subclass of ``cls`` found in ``annotation``, however deeply nested."""
        try:
            if isinstance(annotation, type) and issubclass(annotation, cls):
                return [annotation]
        except TypeError:  # generic aliases on some Python versions
            pass
        if get_origin(annotation) is None:
            return []
        found: list[type[Type]] = []
        for arg in get_args(annotation):
            found.extend(cls.extract_custom_type_from_annotation(arg))
        return found

    @pydantic.model_serializer()
    def serialize_model(self) -> Any:
        formatted = self.format()
        if isinstance(formatted, list):
            parts = json.dumps(formatted, ensure_ascii=False)
            return f"{CUSTOM_TYPE_START_IDENTIFIER}{parts}{CUSTOM_TYPE_END_IDENTIFIER}"
        return formatted

    @classmethod
    def parse_lm_response(cls, response: str | dict[str, Any]) -> Type | None:
        """A value read from the raw LM response rather than the text (None: not present)."""
        return None


def _payload_parts(payload: str) -> list[dict[str, Any]]:
    parsed: Any = None
    # A marker nested in a list or dict value has been JSON-encoded once more.
    for parse in (json.loads, lambda text: json.loads(json.loads(f'"{text}"')), json_repair.loads):
        try:
            parsed = parse(payload)
            break
        except Exception:
            continue
    if isinstance(parsed, list):
        return [
            part if isinstance(part, dict) else {"type": "text", "text": str(part)}
            for part in parsed
        ]
    return [{"type": "text", "text": payload}]


def split_content_parts(text: str) -> list[dict[str, Any]]:
    """``text`` as content parts: the text around each marked custom value, and its parts."""
    parts: list[dict[str, Any]] = []
    last_end = 0
    for match in _MARKED.finditer(text):
        start, end = match.span()
        if start > last_end:
            parts.append({"type": "text", "text": text[last_end:start]})
        parts.extend(_payload_parts(match.group(1).strip()))
        last_end = end
    if last_end < len(text):
        parts.append({"type": "text", "text": text[last_end:]})
    return parts


def expand_custom_types(message: dict[str, Any]) -> dict[str, Any]:
    """A user message whose text holds custom values, with its content split into parts."""
    content = message.get("content")
    if message.get("role") != "user" or not isinstance(content, str):
        return message
    if CUSTOM_TYPE_START_IDENTIFIER not in content:
        return message
    return {**message, "content": split_content_parts(content)}


# --- through the queue ----------------------------------------------------------------
# A custom value crosses a process boundary as ``{TYPE_TAG: "module:Class", "fields": {...}}``
# (its own fields, not the prompt form), and is rebuilt on the worker before the program runs.
TYPE_TAG = "__dspyq_type__"


def custom_types_to_json(value: Any) -> Any:
    """``value`` with every custom-type instance (at any depth) as its tagged JSON form."""
    if isinstance(value, Type):
        cls = type(value)
        fields = {name: custom_types_to_json(getattr(value, name)) for name in cls.model_fields}
        return {TYPE_TAG: f"{cls.__module__}:{cls.__qualname__}", "fields": fields}
    if isinstance(value, dict):
        return {key: custom_types_to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [custom_types_to_json(item) for item in value]
    return value


def _custom_class(path: str) -> type[Type]:
    import importlib

    from dspyq.errors import InputError

    module_name, _, qualname = path.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise InputError(f"custom type {path!r} cannot be imported here: {exc}") from None
    if not (isinstance(found, type) and issubclass(found, Type)):
        raise InputError(f"{path!r} is not a custom type (a subclass of dspyq.Type)")
    return found


def custom_types_from_json(value: Any) -> Any:
    """The inverse of :func:`custom_types_to_json`."""
    if isinstance(value, dict):
        if set(value) == {TYPE_TAG, "fields"} and isinstance(value[TYPE_TAG], str):
            cls = _custom_class(value[TYPE_TAG])
            fields = custom_types_from_json(value["fields"])
            return cls.model_validate(fields)  # validated: a message is not trusted
        return {key: custom_types_from_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [custom_types_from_json(item) for item in value]
    return value

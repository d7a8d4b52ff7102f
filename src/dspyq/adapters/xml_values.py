"""Nested XML for XMLAdapter: values written as elements, schemas as skeletons, elements read back.

Structured outputs (lists, dicts, TypedDicts and pydantic models) are written as nested
elements rather than JSON: a list's items are ``<item>`` children, a dict key that is
not a valid tag becomes ``<entry key="...">``, ``None`` is an empty element. Reading
walks the parsed element tree guided by the field's JSON schema, as DSPy 3.4.1 does.
"""

from __future__ import annotations

import types
import xml.etree.ElementTree as ET
from collections import defaultdict
from typing import Any, Union, get_args, get_origin
from xml.sax.saxutils import quoteattr

import pydantic
from typing_extensions import is_typeddict

from dspyq.core.types import type_adapter


def escape_text(text: str) -> str:
    """Escape what would otherwise open a tag or an entity (``>`` is left as is, like DSPy)."""
    return text.replace("&", "&amp;").replace("<", "&lt;")


def uses_nested_xml(annotation: Any) -> bool:
    """Whether an output of this type is written as nested elements (not text or JSON)."""
    args = [arg for arg in get_args(annotation) if arg is not type(None)]
    if len(args) == 1 and get_origin(annotation) in (Union, types.UnionType):
        annotation = args[0]  # Optional[X] is written as X
    origin = get_origin(annotation)
    item = get_args(annotation)[0] if origin is list and get_args(annotation) else annotation
    # The library's own types (History and friends) keep their own rendering.
    own_model = (
        isinstance(item, type)
        and issubclass(item, pydantic.BaseModel)
        and item.__module__.startswith("dspyq.")
    )
    return not own_model and (
        origin in (list, dict)
        or is_typeddict(annotation)
        or (isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel))
    )


def value_to_xml(value: Any, tag: str, key: str | None = None) -> str:
    """A JSON-like value as one element named ``tag`` (with a ``key`` attribute for odd keys)."""
    attrs = f" key={quoteattr(key)}" if key is not None else ""
    if isinstance(value, list):
        children = "".join(value_to_xml(item, "item") for item in value)
        return f"<{tag}{attrs}>{children}</{tag}>" if children else f"<{tag}{attrs} />"
    if isinstance(value, dict):
        parts = []
        for name, child in value.items():
            name = str(name)
            tag_like = (name[:1] + name[1:].replace("-", "_").replace(".", "_")).isidentifier()
            parts.append(
                value_to_xml(child, name) if tag_like else value_to_xml(child, "entry", name)
            )
        return f"<{tag}{attrs}>{''.join(parts)}</{tag}>"
    if value is None:
        return f"<{tag}{attrs} />"
    return f"<{tag}{attrs}>{escape_text(str(value))}</{tag}>"


def _schema(annotation: Any) -> dict[str, Any]:
    return type_adapter(annotation).json_schema(by_alias=False)


def xml_schema(tag: str, annotation: Any) -> str:
    """The element skeleton of ``annotation``: ``<tag><a>...</a><b>...</b></tag>``."""
    schema = _schema(annotation)
    return _schema_to_xml(tag, schema, schema.get("$defs", {}), frozenset())


def _schema_to_xml(
    tag: str, schema: dict[str, Any], defs: dict[str, Any], seen: frozenset[str]
) -> str:
    ref = schema.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        if name in seen:  # a recursive model: stop at the first repeat
            return f"<{tag}>...</{tag}>"
        return _schema_to_xml(tag, defs[name], defs, seen | {name})
    choices = schema.get("anyOf")
    if choices:
        chosen = next((s for s in choices if s.get("type") != "null"), choices[0])
        return _schema_to_xml(tag, chosen, defs, seen)
    if schema.get("type") == "array":
        return f"<{tag}>{_schema_to_xml('item', schema.get('items', {}), defs, seen)}</{tag}>"
    children = "".join(
        _schema_to_xml(name, child, defs, seen)
        for name, child in schema.get("properties", {}).items()
    )
    return f"<{tag}>{children}</{tag}>" if children else f"<{tag}>...</{tag}>"


def group_children(element: ET.Element) -> dict[str, list[ET.Element]]:
    """Child elements by name (an ``<entry key=...>`` by its key), in document order."""
    children: dict[str, list[ET.Element]] = defaultdict(list)
    for child in element:
        name = child.attrib.get("key", child.tag) if child.tag == "entry" else child.tag
        children[name].append(child)
    return children


def _is_blank(element: ET.Element) -> bool:
    return not list(element) and not (element.text or "").strip()


def elements_to_value(
    elements: list[ET.Element], schema: dict[str, Any], defs: dict[str, Any]
) -> Any:
    """The JSON-like value that the same-named ``elements`` spell under ``schema``."""
    schema = defs.get(schema.get("$ref", "").rsplit("/", 1)[-1], schema)
    choices = schema.get("anyOf")
    if choices:
        if {"type": "null"} in choices and _is_blank(elements[0]):
            return None
        choices = [choice for choice in choices if choice.get("type") != "null"]
        schema = choices[0]
        if list(elements[0]):  # nested content: prefer a structured alternative
            schema = next((c for c in choices if c.get("type") != "string"), schema)
    if schema.get("type") == "array":
        return _array_value(elements, schema, defs)
    element = elements[0]
    if schema.get("type") == "string" and list(element):
        inner = "".join(ET.tostring(child, encoding="unicode") for child in element)
        return (element.text or "") + inner
    children = group_children(element)
    if not children:
        if schema.get("type") == "object" and not (element.text or "").strip():
            return {}
        texts = [(each.text or "").strip() for each in elements]
        return texts[0] if len(texts) == 1 else texts
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", {})
    extra = extra if isinstance(extra, dict) else {}
    return {
        name: elements_to_value(items, properties.get(name, extra), defs)
        for name, items in children.items()
    }


def _array_value(elements: list[ET.Element], schema: dict[str, Any], defs: dict[str, Any]) -> Any:
    if len(elements) == 1 and not list(elements[0]):
        text = (elements[0].text or "").strip()
        if not text:
            return []
        if text.startswith("["):  # a JSON list written as text: parsed later
            return text
    if len(elements) == 1:
        items = group_children(elements[0]).get("item")
        if items:
            elements = items
    return [elements_to_value([element], schema.get("items", {}), defs) for element in elements]


def field_schema(annotation: Any) -> tuple[dict[str, Any], pydantic.TypeAdapter[Any]]:
    """(JSON schema, TypeAdapter) of an output type, for reading its elements."""
    return _schema(annotation), type_adapter(annotation)

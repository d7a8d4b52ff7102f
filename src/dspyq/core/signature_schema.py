"""Rebuild a pydantic model from its JSON schema, for signatures whose model cannot be imported.

Covers what pydantic itself emits for plain data models: objects with properties
(required or defaulted), ``$ref``/``$defs``, arrays, open dicts (``additionalProperties``),
``anyOf`` unions, ``enum``/``const`` (as ``Literal``) and the scalar types. Validators,
methods and custom serialisers of the original class are not recoverable from a schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Union

import pydantic

from dspyq.errors import SignatureError

_SCALARS: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "null": type(None),
}


class _SchemaReader:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.defs: Mapping[str, Any] = root.get("$defs", {})
        self.models: dict[str, Any] = {}
        self.building: set[str] = set()

    def type_of(self, schema: Mapping[str, Any]) -> Any:
        if "$ref" in schema:
            return self.model(str(schema["$ref"]).rsplit("/", 1)[-1])
        if "const" in schema:
            return Literal[schema["const"]]
        if "enum" in schema:
            return Literal[tuple(schema["enum"])]
        if "anyOf" in schema or "oneOf" in schema:
            members = [self.type_of(s) for s in schema.get("anyOf", schema.get("oneOf", []))]
            return Union[tuple(members)]  # noqa: UP007
        kind = schema.get("type")
        if isinstance(kind, list):
            return Union[tuple(self.type_of({**schema, "type": k}) for k in kind)]  # noqa: UP007
        if kind == "array":
            items = schema.get("items")
            return list[self.type_of(items)] if isinstance(items, Mapping) else list[Any]  # type: ignore[misc]
        if kind == "object":
            if "properties" in schema:
                return self.object_model(str(schema.get("title", "Model")), schema)
            values = schema.get("additionalProperties")
            value_type = self.type_of(values) if isinstance(values, Mapping) else Any
            return dict[str, value_type]  # type: ignore[valid-type]
        if kind in _SCALARS:
            return _SCALARS[str(kind)]
        return Any

    def model(self, name: str) -> Any:
        if name not in self.models:
            if name not in self.defs:
                raise SignatureError(f"JSON schema refers to an unknown definition `{name}`.")
            if name in self.building:
                raise SignatureError(
                    f"Cannot rebuild the recursive model `{name}` from its schema."
                )
            self.building.add(name)
            self.models[name] = self.object_model(name, self.defs[name])
        return self.models[name]

    def object_model(self, name: str, schema: Mapping[str, Any]) -> Any:
        required = set(schema.get("required", []))
        fields: dict[str, Any] = {}
        for prop, prop_schema in schema.get("properties", {}).items():
            annotation = self.type_of(prop_schema)
            if prop in required:
                fields[prop] = (annotation, ...)
            else:
                fields[prop] = (annotation, prop_schema.get("default"))
        return pydantic.create_model(name, **fields)


def model_from_json_schema(name: str, schema: Mapping[str, Any]) -> type[pydantic.BaseModel]:
    """A pydantic model class named ``name`` with the fields described by ``schema``."""
    reader = _SchemaReader(schema)
    model = reader.object_model(name, schema)
    assert isinstance(model, type) and issubclass(model, pydantic.BaseModel)
    return model

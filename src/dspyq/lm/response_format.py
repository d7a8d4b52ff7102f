"""Turn the ``response_format`` an adapter asks for into OpenAI's wire form.

A pydantic model class becomes ``{"type": "json_schema", "json_schema": {...,
"strict": true}}``; OpenAI's strict mode wants every object closed
(``additionalProperties: false``) and every property required, so the schema is
tightened accordingly. Dicts (``{"type": "json_object"}``) pass through untouched.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from dspyq.errors import ConfigurationError


def _close_objects(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") == "object" and isinstance(node.get("properties"), dict):
            node.setdefault("additionalProperties", False)
            node["required"] = list(node["properties"])
        for value in node.values():
            _close_objects(value)
    elif isinstance(node, list):
        for item in node:
            _close_objects(item)


def strict_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema, closed and all-required as OpenAI's strict mode demands."""
    schema = copy.deepcopy(model.model_json_schema())
    _close_objects(schema)
    return schema


def normalize_response_format(value: Any) -> dict[str, Any] | None:
    """``None``, a dict, or a pydantic model class -> the dict to send (or None)."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value
    if isinstance(value, type) and issubclass(value, BaseModel):
        return {
            "type": "json_schema",
            "json_schema": {
                "name": value.__name__,
                "schema": strict_json_schema(value),
                "strict": True,
            },
        }
    raise ConfigurationError(
        "response_format must be a dict such as {'type': 'json_object'} or a pydantic "
        f"model class, not {type(value).__name__}",
        context={"response_format": repr(value)[:200]},
    )

"""Signatures to JSON and back, so a signature can cross a process boundary.

Form::

    {"name": "QA", "instructions": "...",
     "fields": [{"name": "answer", "io": "output", "type": "Literal['a', 'b']",
                 "desc": "...", "prefix": "Answer:", "constraints": {"ge": 1}}],
     "types": {"Person": {"kind": "model", "import_path": "app.models:Person",
                          "json_schema": {...}}}}

Types are written as Python type expressions, read back by the string grammar. Builtins,
``typing`` forms, ``Literal`` and ``History`` need nothing more. Pydantic models and
Enums are listed under ``types``: on load they are imported from ``import_path`` when
possible (the same class, with its validators); otherwise a model is rebuilt from its
JSON schema with ``pydantic.create_model`` (fields and types only) and an Enum from its
members.
"""

from __future__ import annotations

import enum
import importlib
import types
from collections.abc import Mapping
from typing import Any, Literal, Union, get_args, get_origin

import pydantic
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from dspyq.core.signature import (
    InputField,
    OutputField,
    Signature,
    field_extra,
    field_role,
    make_signature,
)
from dspyq.core.signature_parse import parse_type_expression
from dspyq.core.types import History
from dspyq.errors import SignatureError

_BUILTIN_NAMES = {
    t: t.__name__
    for t in (int, str, float, bool, bytes, bytearray, complex, list, dict, tuple, set, frozenset)
}
_CONSTRAINT_KEYS = ("gt", "ge", "lt", "le", "multiple_of", "min_length", "max_length")
_PYDANTIC_EXTRA_KEYS = ("pattern",)


def type_to_source(annotation: Any, named: dict[str, Any]) -> str:
    """A Python expression for ``annotation``; models and Enums are added to ``named``."""
    if annotation is None or annotation is type(None):
        return "None"
    if annotation is Any:
        return "Any"
    if annotation is History:
        return "History"
    if (
        getattr(annotation, "__module__", None) == "dspyq.core.react"
        and annotation.__name__ == "Tool"
    ):
        return "Tool"  # named, not imported: react.py builds on signatures
    if annotation is Ellipsis:
        return "..."
    if annotation in _BUILTIN_NAMES:
        return _BUILTIN_NAMES[annotation]
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Literal:
        for arg in args:
            if not isinstance(arg, str | int | float | bool | None):
                raise SignatureError(f"Cannot serialise Literal member {arg!r}.")
        return f"Literal[{', '.join(repr(arg) for arg in args)}]"
    if origin is types.UnionType:
        return " | ".join(type_to_source(arg, named) for arg in args)
    if origin is Union:
        members = [type_to_source(arg, named) for arg in args]
        if len(args) == 2 and type(None) in args:
            (inner,) = [m for m, a in zip(members, args, strict=True) if a is not type(None)]
            return f"Optional[{inner}]"
        return f"Union[{', '.join(members)}]"
    if origin in _BUILTIN_NAMES and args:
        return f"{_BUILTIN_NAMES[origin]}[{', '.join(type_to_source(a, named) for a in args)}]"
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel | enum.Enum):
        name = annotation.__name__
        if named.get(name, annotation) is not annotation:
            raise SignatureError(f"Two different types are named `{name}`; rename one.")
        named[name] = annotation
        return name
    raise SignatureError(f"Cannot serialise field type {annotation!r} to JSON.")


def _import_path(cls: type) -> str | None:
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        return None
    return f"{cls.__module__}:{cls.__qualname__}"


def _describe_type(cls: type) -> dict[str, Any]:
    if issubclass(cls, enum.Enum):
        return {
            "kind": "enum",
            "import_path": _import_path(cls),
            "members": {member.name: member.value for member in cls},
        }
    assert issubclass(cls, pydantic.BaseModel)
    return {
        "kind": "model",
        "import_path": _import_path(cls),
        "json_schema": cls.model_json_schema(),
    }


def _constraints(field: FieldInfo) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in field.metadata:
        for key in (*_CONSTRAINT_KEYS, *_PYDANTIC_EXTRA_KEYS):
            value = getattr(item, key, None)
            if value is not None:
                found[key] = value
    return found


def signature_to_json(signature: type[Signature]) -> dict[str, Any]:
    """The JSON form of a signature (see the module docstring)."""
    named: dict[str, Any] = {}
    fields = []
    for name, field in signature.fields.items():
        extra = field_extra(field)
        entry: dict[str, Any] = {
            "name": name,
            "io": field_role(field),
            "type": type_to_source(field.annotation, named),
            "desc": extra.get("desc"),
            "prefix": extra.get("prefix"),
        }
        if "IS_TYPE_UNDEFINED" in extra:  # declared without a type (DSPy keeps the mark)
            entry["type_undefined"] = bool(extra["IS_TYPE_UNDEFINED"])
        constraints = _constraints(field)
        if constraints:
            entry["constraints"] = constraints
        if field.default is not PydanticUndefined:
            entry["default"] = pydantic.TypeAdapter(Any).dump_python(field.default, mode="json")
        fields.append(entry)
    return {
        "name": signature.__name__,
        "instructions": signature.instructions,
        "fields": fields,
        "types": {name: _describe_type(cls) for name, cls in named.items()},
    }


def _load_by_path(path: str | None) -> Any:
    if not path or ":" not in path:
        return None
    module_name, qualname = path.split(":", 1)
    try:
        value: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError):
        return None
    return value


def _rebuild_type(name: str, spec: Mapping[str, Any]) -> Any:
    loaded = _load_by_path(spec.get("import_path"))
    if isinstance(loaded, type):
        return loaded
    if spec.get("kind") == "enum":
        return enum.Enum(name, dict(spec.get("members", {})))
    if spec.get("kind") == "model":
        from dspyq.core.signature_schema import model_from_json_schema

        return model_from_json_schema(name, spec.get("json_schema", {}))
    raise SignatureError(f"Cannot rebuild type `{name}`: unknown kind {spec.get('kind')!r}.")


def signature_from_json(data: Mapping[str, Any]) -> type[Signature]:
    """Rebuild a signature class from :func:`signature_to_json` output."""
    try:
        custom = {name: _rebuild_type(name, spec) for name, spec in data.get("types", {}).items()}
        fields: dict[str, tuple[Any, FieldInfo]] = {}
        for entry in data["fields"]:
            name = entry["name"]
            annotation = parse_type_expression(entry["type"], custom)
            kwargs: dict[str, Any] = dict(entry.get("constraints") or {})
            for key in ("desc", "prefix"):
                if entry.get(key) is not None:
                    kwargs[key] = entry[key]
            if "default" in entry:
                kwargs["default"] = entry["default"]
            if "type_undefined" in entry:
                kwargs["IS_TYPE_UNDEFINED"] = bool(entry["type_undefined"])
            make_field = InputField if entry["io"] == "input" else OutputField
            if entry["io"] not in ("input", "output"):
                raise SignatureError(
                    f"Field `{name}` has io {entry['io']!r}; expected input or output."
                )
            fields[name] = (annotation, make_field(**kwargs))
        return make_signature(
            fields, data.get("instructions"), signature_name=data.get("name") or "StringSignature"
        )
    except SignatureError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        # Forged or hand-edited JSON of any shape (None, a list, a field that is a number).
        raise SignatureError(f"Malformed signature JSON: {exc!r}") from exc

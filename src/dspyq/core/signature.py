"""Signatures: the typed input/output contract of a module, as in DSPy 3.4.1.

A signature is a pydantic model class whose fields are declared with :func:`InputField`
or :func:`OutputField`; its docstring is the task instructions. It is written either as
a class or as a string (``Signature("question, ctx: list[str] -> answer: int")``), and
every edit (``prepend``, ``with_instructions``, ...) returns a new class, so signatures
can be shared freely between modules and threads.

Fields and their DSPy metadata are declared in :mod:`dspyq.core.signature_fields`.
"""

from __future__ import annotations

import copy
import inspect
import sys
import weakref
from collections.abc import Mapping
from typing import Any, ClassVar, cast

import pydantic
from pydantic._internal._model_construction import ModelMetaclass
from pydantic.fields import FieldInfo

from dspyq.core.signature_errors import SignatureTypeError, SignatureValueError
from dspyq.core.signature_fields import (
    FieldRole,
    InputField,
    OutputField,
    describe_constraints,
    field_extra,
    field_role,
    infer_prefix,
)
from dspyq.errors import SignatureError

_ROLE_FIELDS: weakref.WeakKeyDictionary[
    type, dict[str, tuple[dict[str, FieldInfo], dict[str, FieldInfo]]]
] = weakref.WeakKeyDictionary()
"""Each signature class's input and output fields, with the fields dict they came from."""


__all__ = [
    "FieldRole",
    "InputField",
    "OutputField",
    "Signature",
    "SignatureMeta",
    "default_instructions",
    "describe_constraints",
    "ensure_signature",
    "field_extra",
    "field_role",
    "infer_prefix",
    "make_signature",
]


def default_instructions(input_names: list[str], output_names: list[str]) -> str:
    """DSPy's instructions for a signature that has none."""
    inputs = ", ".join(f"`{name}`" for name in input_names)
    outputs = ", ".join(f"`{name}`" for name in output_names)
    return f"Given the fields {inputs}, produce the fields {outputs}."


class SignatureMeta(ModelMetaclass):
    """Metaclass of signatures: builds them from strings and exposes their fields."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls is Signature:
            # Signature("a -> b", "instructions") builds a new signature class.
            return make_signature(*args, **kwargs)
        return super().__call__(*args, **kwargs)

    def __new__(
        mcs,
        name: str,
        bases: tuple[type[Any], ...],
        namespace: dict[str, Any],
        **kwargs: Any,
    ) -> type:
        annotations = dict(namespace.get("__annotations__", {}))
        field_order = [key for key, value in namespace.items() if isinstance(value, FieldInfo)]
        for key in field_order:
            if key not in annotations:  # fields declared without a type are str, marked as such
                annotations[key] = str
                extra = namespace[key].json_schema_extra
                if isinstance(extra, dict):
                    extra["IS_TYPE_UNDEFINED"] = True
        ordered = {key: annotations[key] for key in field_order}
        ordered.update({key: value for key, value in annotations.items() if key not in ordered})
        namespace["__annotations__"] = ordered
        has_own_doc = namespace.get("__doc__") is not None

        # The frame that defines the class: pydantic would look one frame too shallow
        # (ours) for local types named in string annotations.
        defining_scope = dict(sys._getframe(1).f_locals)
        try:
            cls = cast(type, super().__new__(mcs, name, bases, namespace, **kwargs))
            if not getattr(cls, "__pydantic_complete__", True):
                cls.model_rebuild(_types_namespace=defining_scope)  # type: ignore[attr-defined]
        except SignatureError:
            raise
        except pydantic.PydanticUndefinedAnnotation as exc:
            raise SignatureError(f"Signature `{name}` names an unknown type: {exc}") from exc
        except (pydantic.PydanticUserError, pydantic.PydanticSchemaGenerationError) as exc:
            raise SignatureError(f"Signature `{name}` has an unsupported field: {exc}") from exc
        except (TypeError, NameError, ValueError) as exc:
            raise SignatureError(f"Signature `{name}` is malformed: {exc}") from exc

        if bases == (pydantic.BaseModel,):
            return cls  # the Signature base class itself
        if not has_own_doc:
            # Inherit instructions from a user-defined signature base, else use the default.
            cls.__doc__ = None
            for base in bases:
                if isinstance(base, SignatureMeta) and base is not Signature and base.__doc__:
                    cls.__doc__ = base.__doc__
        model_fields: dict[str, FieldInfo] = cls.model_fields  # type: ignore[attr-defined]
        for field_name, field in model_fields.items():
            if field_role(field) not in ("input", "output"):
                raise SignatureTypeError(
                    f"Field `{field_name}` in signature `{name}` must be declared with "
                    "InputField or OutputField."
                )
            extra = dict(field_extra(field))  # own copy: FieldInfos share this dict
            extra.setdefault("prefix", infer_prefix(field_name) + ":")
            extra.setdefault("desc", f"${{{field_name}}}")
            field.json_schema_extra = extra
        if cls.__doc__ is None:
            signature_cls = cast("type[Signature]", cls)
            cls.__doc__ = default_instructions(
                list(signature_cls.input_fields), list(signature_cls.output_fields)
            )
        return cls

    def _fields_with_role(cls, role: str) -> dict[str, FieldInfo]:
        # Asked dozens of times per call (formatting, validation, parsing): each class's
        # answer is kept while its fields are the same dict (a rebuild replaces it).
        model_fields: dict[str, FieldInfo] = cls.__pydantic_fields__  # type: ignore[attr-defined]
        known = _ROLE_FIELDS.setdefault(cls, {})
        cached = known.get(role)
        if cached is None or cached[0] is not model_fields:
            fields = {name: f for name, f in model_fields.items() if field_role(f) == role}
            cached = known[role] = (model_fields, fields)
        return dict(cached[1])

    @property
    def instructions(cls) -> str:
        """The task instructions (the class docstring, cleaned of indentation)."""
        return inspect.cleandoc(cls.__doc__ or "")

    @property
    def input_fields(cls) -> dict[str, FieldInfo]:
        """Input fields by name, in declaration order."""
        return cls._fields_with_role("input")

    @property
    def output_fields(cls) -> dict[str, FieldInfo]:
        """Output fields by name, in declaration order."""
        return cls._fields_with_role("output")

    @property
    def fields(cls) -> dict[str, FieldInfo]:
        """Input fields then output fields."""
        return {**cls.input_fields, **cls.output_fields}

    @property
    def signature(cls) -> str:
        """The short string form, e.g. ``"question, ctx -> answer"``."""
        return f"{', '.join(cls.input_fields)} -> {', '.join(cls.output_fields)}"

    def __repr__(cls) -> str:
        lines = [f"{cls.__name__}({cls.signature}", f"    instructions={cls.instructions!r}"]
        for name, field in cls.fields.items():
            extra = field_extra(field)
            lines.append(
                f"    {name} = Field(annotation={field.annotation!r} "
                f"role={extra.get('__dspy_field_type')!r} desc={extra.get('desc')!r} "
                f"prefix={extra.get('prefix')!r})"
            )
        return "\n".join(lines) + "\n)"


class Signature(pydantic.BaseModel, metaclass=SignatureMeta):
    """Base class of all signatures; subclass it, or call it with a string spec.

    ``Signature("q, ctx: list[str] -> answer: int", "instructions")`` returns a new
    subclass. Class form: the docstring is the instructions and each attribute is an
    ``InputField``/``OutputField`` with a type annotation (``str`` when omitted).
    """

    model_config: ClassVar[pydantic.ConfigDict] = pydantic.ConfigDict(protected_namespaces=())

    @classmethod
    def with_instructions(cls, instructions: str) -> type[Signature]:
        """A copy of this signature with other instructions."""
        return _rebuild(cls, _copy_fields(cls), instructions)

    @classmethod
    def with_updated_fields(cls, name: str, type_: Any = None, **kwargs: Any) -> type[Signature]:
        """A copy with field ``name``'s metadata (``desc=``, ``prefix=``...) or type changed."""
        fields = _copy_fields(cls)
        if name not in fields:
            raise SignatureError(f"Signature `{cls.__name__}` has no field `{name}`.")
        annotation, field = fields[name]
        field.json_schema_extra = {**field_extra(field), **kwargs}
        fields[name] = (type_ if type_ is not None else annotation, field)
        return _rebuild(cls, fields, cls.instructions)

    @classmethod
    def prepend(cls, name: str, field: FieldInfo, type_: Any = None) -> type[Signature]:
        """A copy with ``field`` first among the fields of its role."""
        return cls.insert(0, name, field, type_)

    @classmethod
    def append(cls, name: str, field: FieldInfo, type_: Any = None) -> type[Signature]:
        """A copy with ``field`` last among the fields of its role."""
        return cls.insert(-1, name, field, type_)

    @classmethod
    def insert(cls, index: int, name: str, field: FieldInfo, type_: Any = None) -> type[Signature]:
        """A copy with ``field`` at ``index`` among the inputs or outputs (negative counts from the end)."""
        role = field_role(field)
        if role not in ("input", "output"):
            raise SignatureError(f"Field `{name}` must be created with InputField or OutputField.")
        if type_ is None:
            type_ = field.annotation if field.annotation is not None else str
        copied = _copy_fields(cls)
        inputs = [(k, v) for k, v in copied.items() if field_role(v[1]) == "input"]
        outputs = [(k, v) for k, v in copied.items() if field_role(v[1]) == "output"]
        target = inputs if role == "input" else outputs
        position = index + len(target) + 1 if index < 0 else index
        if not 0 <= position <= len(target):
            raise SignatureError(
                f"Invalid index {index} to insert {role} field `{name}`: the signature has "
                f"{len(target)} {role} fields."
            )
        target.insert(position, (name, (type_, copy.deepcopy(field))))
        return _rebuild(cls, dict(inputs + outputs), cls.instructions)

    @classmethod
    def delete(cls, name: str) -> type[Signature]:
        """A copy without field ``name`` (unchanged if there is no such field)."""
        fields = _copy_fields(cls)
        fields.pop(name, None)
        return _rebuild(cls, fields, cls.instructions)

    @classmethod
    def equals(cls, other: Any) -> bool:
        """Same instructions and the same fields (names, types and metadata)."""
        if not isinstance(other, SignatureMeta):
            return False
        if cls.instructions != other.instructions or list(cls.fields) != list(other.fields):
            return False
        return all(
            _compared_extra(field) == _compared_extra(other.fields[name])
            and field.annotation == other.fields[name].annotation
            for name, field in cls.fields.items()
        )

    @classmethod
    def dump_state(cls) -> dict[str, Any]:
        """Instructions plus each field's prefix and description, by position (DSPy's saved form)."""
        return {
            "instructions": cls.instructions,
            "fields": [
                {"prefix": field_extra(f)["prefix"], "description": field_extra(f)["desc"]}
                for f in cls.fields.values()
            ],
        }

    @classmethod
    def load_state(cls, state: Mapping[str, Any]) -> type[Signature]:
        """A copy with the saved instructions, prefixes and descriptions applied by position."""
        fields = _copy_fields(cls)
        for (_, field), saved in zip(fields.values(), state.get("fields", []), strict=False):
            extra = dict(field_extra(field))
            if "prefix" in saved:
                extra["prefix"] = saved["prefix"]
            if "description" in saved:
                extra["desc"] = saved["description"]
            field.json_schema_extra = extra
        return _rebuild(cls, fields, state.get("instructions", cls.instructions))

    @classmethod
    def to_json(cls) -> dict[str, Any]:
        """The full JSON form: name, instructions, and every field with its type string."""
        from dspyq.core.signature_json import signature_to_json

        return signature_to_json(cls)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> type[Signature]:
        """Rebuild a signature from :meth:`to_json` output."""
        from dspyq.core.signature_json import signature_from_json

        return signature_from_json(data)

    @classmethod
    def validate_inputs(cls, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Check that every required input is present and of its declared type (the queue
        edge's strict check; in-process calls only warn, as DSPy does)."""
        from dspyq.core.signature_validation import validate_inputs

        return validate_inputs(cls, inputs)


def _compared_extra(field: FieldInfo) -> dict[str, Any]:
    """Field metadata that makes two signatures differ (the untyped mark only affects warnings)."""
    return {k: v for k, v in field_extra(field).items() if k != "IS_TYPE_UNDEFINED"}


def _copy_fields(signature: type[Signature]) -> dict[str, tuple[Any, FieldInfo]]:
    return {
        name: (field.annotation, copy.deepcopy(field)) for name, field in signature.fields.items()
    }


def _rebuild(
    base: type[Signature], fields: Mapping[str, tuple[Any, FieldInfo]], instructions: str
) -> type[Signature]:
    return make_signature(dict(fields), instructions, signature_name=base.__name__)


def make_signature(
    signature: str | Mapping[str, Any],
    instructions: str | None = None,
    signature_name: str = "StringSignature",
    custom_types: Mapping[str, Any] | None = None,
) -> type[Signature]:
    """Build a signature class from a string spec or a ``{name: field | (type, field)}`` dict."""
    if isinstance(signature, str):
        from dspyq.core.signature_parse import parse_signature

        fields: dict[str, tuple[Any, FieldInfo]] = parse_signature(signature, custom_types)
    elif isinstance(signature, Mapping):
        fields = {}
        for name, spec in signature.items():
            if isinstance(spec, FieldInfo):
                annotation, field = spec.annotation, spec
            elif isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], FieldInfo):
                annotation, field = spec
            else:
                raise SignatureValueError(
                    f"Field `{name}` must be an InputField/OutputField or a (type, field) pair."
                )
            fields[str(name)] = (str if annotation is None else annotation, field)
    else:
        raise SignatureValueError(
            f"A signature is built from a string or a dict of fields, not {type(signature).__name__}."
        )
    for name, (_, field) in fields.items():
        if not name.isidentifier() or name.startswith("_"):
            raise SignatureValueError(
                f"Invalid field name {name!r}: use a Python identifier not starting with '_'."
            )
        if field_role(field) not in ("input", "output"):
            raise SignatureValueError(
                f"Field `{name}` must be declared with InputField or OutputField."
            )
    namespace: dict[str, Any] = {"__annotations__": {}, "__doc__": instructions or None}
    for name, (annotation, field) in fields.items():
        namespace["__annotations__"][name] = annotation
        namespace[name] = copy.deepcopy(field)
    namespace["__module__"] = __name__
    return cast("type[Signature]", SignatureMeta(signature_name, (Signature,), namespace))


def ensure_signature(
    signature: str | type[Signature],
    instructions: str | None = None,
    custom_types: Mapping[str, Any] | None = None,
) -> type[Signature]:
    """A signature class from a string spec or a signature class (the typed spelling of
    ``Signature("a -> b")``, which type checkers cannot follow through the metaclass)."""
    if isinstance(signature, str):
        return make_signature(signature, instructions, custom_types=custom_types)
    if not isinstance(signature, SignatureMeta):
        raise SignatureError(f"Expected a signature string or class, not {signature!r}.")
    if instructions is not None:
        raise SignatureError("Instructions can only be given with a string signature.")
    return signature

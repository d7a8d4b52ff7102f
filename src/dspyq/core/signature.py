"""Signatures: the typed input/output contract of a module, as in DSPy 3.4.1.

A signature is a pydantic model class whose fields are declared with :func:`InputField`
or :func:`OutputField`; its docstring is the task instructions. It is written either as
a class or as a string (``Signature("question, ctx: list[str] -> answer: int")``), and
every edit (``prepend``, ``with_instructions``, ...) returns a new class, so signatures
can be shared freely between modules and threads.

Field metadata lives in ``FieldInfo.json_schema_extra`` exactly where DSPy keeps it
(``__dspy_field_type``, ``desc``, ``prefix``, ``constraints``), because saved programs
and prompts depend on it.
"""

from __future__ import annotations

import copy
import inspect
import re
import sys
import warnings
import weakref
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, cast, get_args

import pydantic
from pydantic._internal._model_construction import ModelMetaclass
from pydantic.fields import FieldInfo

from dspyq.core.types import annotation_name, type_adapter
from dspyq.errors import InputError, SignatureError

FieldRole = Literal["input", "output"]

# Keys of InputField/OutputField kwargs that are DSPy metadata, not pydantic options.
_DSPY_FIELD_KEYS = ("desc", "prefix", "format", "parser", "__dspy_field_type", "IS_TYPE_UNDEFINED")

# Pydantic constraints and how DSPy labels them on the "Constraints:" line.
_CONSTRAINT_LABELS = {
    "gt": "greater than",
    "ge": "greater than or equal to",
    "lt": "less than",
    "le": "less than or equal to",
    "min_length": "minimum length",
    "max_length": "maximum length",
    "multiple_of": "a multiple of the given number",
    "allow_inf_nan": "allow 'inf', '-inf', 'nan' values",
}

_DEPRECATED_FIELD_KEYS = ("prefix", "format", "parser")


def describe_constraints(**kwargs: Any) -> str:
    """The constraint line DSPy shows for a field, in the order given (``""`` when none)."""
    return ", ".join(
        f"{_CONSTRAINT_LABELS[key]}: {value}"
        for key, value in kwargs.items()
        if key in _CONSTRAINT_LABELS
    )


def _warn_deprecated(kwargs: dict[str, Any]) -> None:
    for key in _DEPRECATED_FIELD_KEYS:
        if key in kwargs:
            warnings.warn(
                f"The '{key}' argument in InputField/OutputField is deprecated and has no effect "
                "in DSPy. It will be removed in a future version.",
                DeprecationWarning,
                stacklevel=4,
            )


_PYDANTIC_FIELD_KEYS = frozenset(inspect.signature(pydantic.Field).parameters) - {"extra"}

_ROLE_FIELDS: weakref.WeakKeyDictionary[
    type, dict[str, tuple[dict[str, FieldInfo], dict[str, FieldInfo]]]
] = weakref.WeakKeyDictionary()
"""Each signature class's input and output fields, with the fields dict they came from."""


def _field(role: FieldRole, kwargs: dict[str, Any]) -> Any:
    _warn_deprecated(kwargs)
    extra: dict[str, Any] = {}
    pydantic_kwargs: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key in _DSPY_FIELD_KEYS:
            extra[key] = value
        elif key in _PYDANTIC_FIELD_KEYS:
            pydantic_kwargs[key] = value
        else:
            raise SignatureError(
                f"Unknown option `{key}` for an {role} field: use desc=, prefix= or a pydantic "
                "Field option such as ge=, le=, min_length=, default=."
            )
    extra["__dspy_field_type"] = role
    if "description" in kwargs and "desc" not in extra:
        extra["desc"] = kwargs["description"]
    constraints = describe_constraints(**kwargs)
    if constraints:
        extra["constraints"] = constraints
    try:
        return pydantic.Field(json_schema_extra=extra, **pydantic_kwargs)
    except (TypeError, ValueError) as exc:
        raise SignatureError(f"Invalid option for an {role} field: {exc}") from exc


def InputField(**kwargs: Any) -> Any:
    """Declare an input field: ``desc=``, ``prefix=`` and any pydantic constraint (``ge=``, ...)."""
    return _field("input", kwargs)


def OutputField(**kwargs: Any) -> Any:
    """Declare an output field: ``desc=``, ``prefix=`` and any pydantic constraint (``ge=``, ...)."""
    return _field("output", kwargs)


def infer_prefix(name: str) -> str:
    """Turn a field name into DSPy's display prefix: ``search_query`` -> ``Search Query``.

    camelCase is split, letters and digits are separated (``text2number`` ->
    ``Text 2 Number``) and all-caps words (acronyms) are kept as they are.
    """
    snake = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", snake)
    snake = re.sub(r"([a-zA-Z])(\d)", r"\1_\2", snake)
    snake = re.sub(r"(\d)([a-zA-Z])", r"\1_\2", snake)
    return " ".join(word if word.isupper() else word.capitalize() for word in snake.split("_"))


def field_role(field: FieldInfo) -> str | None:
    """``"input"``/``"output"`` for a signature field, None for anything else."""
    extra = field.json_schema_extra
    if isinstance(extra, dict):
        role = extra.get("__dspy_field_type")
        return role if isinstance(role, str) else None
    return None


def field_extra(field: FieldInfo) -> dict[str, Any]:
    """The DSPy metadata dict of a signature field."""
    extra = field.json_schema_extra
    return extra if isinstance(extra, dict) else {}


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
                raise SignatureError(
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
        """Check that every required input is present and of its declared type.

        Returns the inputs unchanged (as a new dict): values are not coerced, so the
        prompt shows exactly what was given. ``str`` fields accept any value, as in
        DSPy (a list given to a str field is rendered as a numbered list).
        """
        for name, field in cls.input_fields.items():
            if name not in inputs:
                if field.is_required() and not _allows_none(field.annotation):
                    raise InputError(
                        f"Missing input field `{name}` for signature `{cls.signature}`.",
                        context={"field": name, "signature": cls.signature},
                    )
                continue
            problem = _type_problem(field.annotation, inputs[name])
            if problem is not None:
                raise InputError(
                    f"Input field `{name}` expects {_type_label(field.annotation)}: {problem}",
                    context={"field": name, "signature": cls.signature},
                )
        return dict(inputs)


def _compared_extra(field: FieldInfo) -> dict[str, Any]:
    """Field metadata that makes two signatures differ (the untyped mark only affects warnings)."""
    return {k: v for k, v in field_extra(field).items() if k != "IS_TYPE_UNDEFINED"}


def _allows_none(annotation: Any) -> bool:
    return annotation is None or type(None) in get_args(annotation)


def _type_label(annotation: Any) -> str:
    return annotation_name(annotation)


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
                raise SignatureError(
                    f"Field `{name}` must be an InputField/OutputField or a (type, field) pair."
                )
            fields[str(name)] = (str if annotation is None else annotation, field)
    else:
        raise SignatureError(
            f"A signature is built from a string or a dict of fields, not {type(signature).__name__}."
        )
    for name, (_, field) in fields.items():
        if not name.isidentifier() or name.startswith("_"):
            raise SignatureError(
                f"Invalid field name {name!r}: use a Python identifier not starting with '_'."
            )
        if field_role(field) not in ("input", "output"):
            raise SignatureError(f"Field `{name}` must be declared with InputField or OutputField.")
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

"""The string-signature grammar: ``"question, ctx: list[str] -> answer: int"``.

Each side of the single ``->`` is read as the parameter list of a Python function
(``def f(<side>): pass``) with :mod:`ast`, as DSPy does, so names are identifiers,
annotations are type expressions and a trailing comma is fine. Annotations are
resolved without evaluating code: names come from ``custom_types``, the caller's
scope, :mod:`typing`, a fixed set of builtins, dspyq's own types and already-imported
modules. Every failure becomes a :class:`~dspyq.errors.SignatureError`.
"""

from __future__ import annotations

import ast
import builtins
import sys
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union, get_origin

from pydantic.fields import FieldInfo

from dspyq.core.signature_errors import SignatureSyntaxError, SignatureValueError
from dspyq.core.types import History

_BUILTIN_TYPES: dict[str, Any] = {
    name: getattr(builtins, name)
    for name in (
        "int",
        "str",
        "float",
        "bool",
        "list",
        "tuple",
        "dict",
        "set",
        "frozenset",
        "complex",
        "bytes",
        "bytearray",
    )
}
_TYPING_NAMES: dict[str, Any] = {
    name: getattr(typing, name) for name in typing.__all__ if not name.startswith("_")
}
_DSPYQ_TYPES: dict[str, Any] = {"History": History}


def _dspyq_types() -> dict[str, Any]:
    """dspyq's own type names of the JSON form (Tool imported late: it builds on signatures)."""
    if "Tool" not in _DSPYQ_TYPES:
        from dspyq.core.react import Tool

        _DSPYQ_TYPES["Tool"] = Tool
    return _DSPYQ_TYPES


_MAX_FRAMES = 64


def is_type_like(value: Any) -> bool:
    """Whether ``value`` can be a field annotation (a class, a generic alias, Any, None)."""
    return (
        isinstance(value, type)
        or value is Any
        or value is None
        or get_origin(value) is not None
        or isinstance(value, types.UnionType)
    )


class _Resolver:
    """Resolves annotation AST nodes to types, looking names up in a fixed order."""

    def __init__(
        self, spec: str, custom_types: Mapping[str, Any] | None, keep_union_operator: bool = False
    ) -> None:
        self.spec = spec
        self.custom_types = dict(custom_types or {})
        # String signatures turn `X | Y` into typing.Union like DSPy; JSON round trips keep it.
        self.keep_union_operator = keep_union_operator
        self._frames = _caller_frames()

    def lookup(self, name: str) -> Any:
        if name in self.custom_types:
            return self.custom_types[name]
        for frame_locals, frame_globals in self._frames:
            for scope in (frame_locals, frame_globals):
                if name in scope and is_type_like(scope[name]):
                    return scope[name]
        # dspyq's own names only for the JSON form: a user's string signature needs
        # History in scope (or in custom_types), as in DSPy.
        tables = (_TYPING_NAMES, _BUILTIN_TYPES) + (
            (_dspyq_types(),) if self.keep_union_operator else ()
        )
        for table in tables:
            if name in table:
                return table[name]
        if name in sys.modules:
            return sys.modules[name]
        raise SignatureValueError(
            f"Unknown name `{name}` in signature {self.spec!r}: pass the type with "
            "custom_types={...} or import it where the signature is built."
        )

    def resolve(self, node: ast.expr) -> Any:
        value = self._evaluate(node)
        if not is_type_like(value):
            raise SignatureValueError(
                f"Field types must be types; `{ast.unparse(node)}` in signature {self.spec!r} is "
                f"a {type(value).__name__}."
            )
        return value

    def _evaluate(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Name):
            return self.lookup(node.id)
        if isinstance(node, ast.Attribute):
            return self._attribute(node)
        if isinstance(node, ast.Constant):
            if node.value is None or node.value is Ellipsis:
                return node.value
            raise SignatureValueError(
                f"Field types must be types; `{ast.unparse(node)}` in signature {self.spec!r} "
                "is a constant."
            )
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            left, right = self.resolve(node.left), self.resolve(node.right)
            if self.keep_union_operator:
                try:
                    return left | right
                except TypeError:
                    pass
            return Union[left, right]  # noqa: UP007
        if isinstance(node, ast.Subscript):
            return self._subscript(node)
        if isinstance(node, ast.List):  # argument lists, as in Callable[[int], str]
            return [self.resolve(item) for item in node.elts]
        raise SignatureValueError(
            f"Unsupported type expression `{ast.unparse(node)}` in signature {self.spec!r}."
        )

    def _attribute(self, node: ast.Attribute) -> Any:
        parts: list[str] = []
        current: ast.expr = node
        while isinstance(current, ast.Attribute):
            parts.insert(0, current.attr)
            current = current.value
        if not isinstance(current, ast.Name):
            raise SignatureValueError(f"Unsupported type expression `{ast.unparse(node)}`.")
        value = self.lookup(current.id)
        path = current.id
        for part in parts:
            path = f"{path}.{part}"
            if hasattr(value, part):
                value = getattr(value, part)
            elif path in sys.modules:
                value = sys.modules[path]
            else:
                raise SignatureValueError(f"Unknown name `{path}` in signature {self.spec!r}.")
        return value

    def _subscript(self, node: ast.Subscript) -> Any:
        base = self._evaluate(node.value)
        elements = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        args: list[Any]
        if base is Literal:
            try:
                args = [ast.literal_eval(element) for element in elements]
            except (ValueError, SyntaxError) as exc:
                raise SignatureValueError(
                    f"Literal values must be constants in signature {self.spec!r}: {exc}"
                ) from exc
        else:
            args = [self._evaluate(element) for element in elements]
        try:
            return base[tuple(args)] if len(args) > 1 else base[args[0]]
        except (TypeError, AttributeError) as exc:
            raise SignatureValueError(
                f"Invalid type `{ast.unparse(node)}` in signature {self.spec!r}: {exc}"
            ) from exc


def _caller_frames() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Scopes of the frames that called into dspyq, nearest first (for user-defined types)."""
    scopes: list[tuple[dict[str, Any], dict[str, Any]]] = []
    frame = sys._getframe(1)
    depth = 0
    while frame is not None and depth < _MAX_FRAMES:
        module = str(frame.f_globals.get("__name__", ""))
        if module.split(".", 1)[0] != "dspyq":
            scopes.append((frame.f_locals, frame.f_globals))
        frame = frame.f_back  # type: ignore[assignment]
        depth += 1
    return scopes


def _parse_side(text: str, spec: str) -> list[tuple[str, ast.expr | None]]:
    try:
        module = ast.parse(f"def f({text}): pass")
    except SyntaxError as exc:
        raise SignatureSyntaxError(
            f"Invalid signature {spec!r}: `{text.strip()}` is not a comma-separated list of "
            f"field names with optional types ({exc.msg})."
        ) from exc
    if (
        len(module.body) != 1
        or not isinstance(module.body[0], ast.FunctionDef)
        or len(module.body[0].body) != 1
        or not isinstance(module.body[0].body[0], ast.Pass)
    ):
        raise SignatureValueError(f"Invalid signature {spec!r}.")
    arguments = module.body[0].args
    # Like DSPy: defaults are ignored; *args, **kwargs and keyword-only names are dropped.
    return [(arg.arg, arg.annotation) for arg in [*arguments.posonlyargs, *arguments.args]]


def parse_signature(
    spec: str, custom_types: Mapping[str, Any] | None = None
) -> dict[str, tuple[Any, FieldInfo]]:
    """Parse a string spec into ``{name: (type, field)}``, inputs first."""
    from dspyq.core.signature import InputField, OutputField

    if spec.count("->") != 1:
        raise SignatureValueError(
            f"Invalid signature format: '{spec}', must contain exactly one '->'."
        )
    input_text, output_text = spec.split("->")
    resolver = _Resolver(spec, custom_types)
    inputs: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    untyped: set[str] = set()
    for side, target in ((input_text, inputs), (output_text, outputs)):
        for name, annotation in _parse_side(side, spec):
            target[name] = str if annotation is None else resolver.resolve(annotation)
            if annotation is None:
                untyped.add(name)
    overlap = [name for name in inputs if name in outputs]
    if overlap:
        raise SignatureValueError(
            "Input and output fields must have distinct names, but found duplicates: "
            f"'{', '.join(sorted(overlap))}'."
        )
    fields: dict[str, tuple[Any, FieldInfo]] = {}
    for name, annotation in inputs.items():
        fields[name] = (annotation, InputField(IS_TYPE_UNDEFINED=name in untyped))
    for name, annotation in outputs.items():
        fields[name] = (annotation, OutputField())
    return fields


def parse_type_expression(source: str, custom_types: Mapping[str, Any] | None = None) -> Any:
    """Resolve one type expression (as written by ``Signature.to_json``) to a type."""
    try:
        node = ast.parse(source, mode="eval").body
    except SyntaxError as exc:
        raise SignatureValueError(f"Invalid type expression {source!r}: {exc.msg}.") from exc
    return _Resolver(source, custom_types, keep_union_operator=True).resolve(node)

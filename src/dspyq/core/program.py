"""Programs as JSON: enough to rebuild a Module in another process (:class:`ProgramSpec`).

A spec holds the module's class (an import path), the arguments it was constructed with
(recorded by ``Module.__new__``) made JSON-safe, its learned state in DSPy's saved form,
and each predictor's full signature. The worker imports the class, calls it with the
decoded arguments, then applies the signatures and the state, so the rebuilt program
prompts exactly as the original does.

Arguments are encoded by type: JSON values as they are; Signature classes as their
JSON form; sub-modules as nested specs; Examples as their fields and input keys;
Embedders as their settings; ``Tool``s and functions (tools, reward functions, metrics,
vectorizers) as import paths. Anything else is refused when the spec is made,
naming the argument, rather than failing later on a worker.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dspyq.core.example import Example
from dspyq.core.imports import (
    check_import_path,
    configured_prefixes,
    import_path_of,
    resolve_import,
)
from dspyq.core.json_check import require_json
from dspyq.core.module import InitArgs, Module
from dspyq.core.react import Tool
from dspyq.core.signature import Signature
from dspyq.errors import DspyqError, InputError, SignatureError, StateError
from dspyq.lm.embedder import Embedder
from dspyq.lm.embedder_json import embedder_from_json, embedder_to_json
from dspyq.settings import PrivacyLevel

logger = logging.getLogger(__name__)

TAG = "$dspyq"
"""Key marking an encoded argument (``{"$dspyq": "signature", ...}``) among plain dicts."""


def _dspyq_version() -> str:
    import dspyq  # at call time: dspyq/__init__ may import this module

    return str(dspyq.__version__)


class ProgramSpec(BaseModel):
    """A dspyq program as JSON: class, constructor arguments, learned state, signatures."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="Import path of the Module class, 'package.module:QualName'.")
    args: list[Any] = Field(
        default_factory=list, description="Encoded positional-only or *args arguments."
    )
    init: dict[str, Any] = Field(
        default_factory=dict, description="Encoded keyword arguments of the constructor."
    )
    state: dict[str, Any] = Field(
        default_factory=dict,
        description="dump_state() in DSPy's saved form; empty means 'as constructed'.",
    )
    signatures: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Each predictor's Signature.to_json(), by predictor path.",
    )
    dspyq_version: str = Field(default_factory=_dspyq_version)
    privacy: PrivacyLevel | None = Field(
        default=None,
        exclude_if=lambda level: level is None,  # specs without one stay as they were
        description="The program's own privacy level; a job running it is at least this strict.",
    )


# --- client side: program -> spec -------------------------------------------------------


def program_to_spec(module: Module) -> ProgramSpec:
    """The JSON spec of ``module``; InputError names any argument a worker could not rebuild."""
    cls = type(module)
    owner = cls.__name__
    kind = import_path_of(cls, f"program class {owner}")
    recorded = module._init_args
    if recorded is None:
        raise InputError(
            f"{owner} was not built through its constructor, so its arguments are "
            "unknown and a worker cannot rebuild it.",
            context={"kind": kind},
        )
    args, kwargs = _split_arguments(cls, recorded)
    state = module.dump_state(json_mode=True)
    try:
        json.dumps(state)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"The learned state of {owner} is not JSON ({exc}); demos must hold "
            "JSON values or pydantic objects.",
            context={"kind": kind},
        ) from exc
    signatures: dict[str, dict[str, Any]] = {}
    for name, predictor in module.named_predictors():
        try:
            signatures[name] = predictor.signature.to_json()
        except SignatureError as exc:
            raise InputError(
                f"The signature of predictor {name!r} of {owner} cannot be sent as "
                f"JSON: {exc.message}",
                context={"predictor": name},
            ) from exc
    return ProgramSpec(
        kind=kind,
        args=[_encode(value, f"#{i}", owner) for i, value in enumerate(args)],
        init={name: _encode(value, name, owner) for name, value in kwargs.items()},
        state=state,
        signatures=signatures,
        privacy=module.privacy,
    )


def _split_arguments(cls: type, recorded: InitArgs) -> tuple[list[Any], dict[str, Any]]:
    """Recorded arguments as (positional, keyword), naming every argument that has a name.

    ``Predict("q -> a", temperature=0)`` becomes ``[], {"signature": "q -> a",
    "temperature": 0}``; only positional-only and ``*args`` values stay positional.
    """
    try:
        signature = inspect.signature(cls)
        bound = signature.bind(*recorded.args, **recorded.kwargs)
    except (TypeError, ValueError):  # no introspectable signature: keep the call as made
        return list(recorded.args), dict(recorded.kwargs)
    varargs = [
        name
        for name, value in bound.arguments.items()
        if signature.parameters[name].kind is inspect.Parameter.VAR_POSITIONAL and value
    ]
    if varargs:  # named parameters before *args must stay positional
        return list(bound.args), dict(bound.kwargs)
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.POSITIONAL_ONLY:
            args.append(value)
        elif kind is inspect.Parameter.VAR_KEYWORD:
            kwargs.update(value)
        elif kind is not inspect.Parameter.VAR_POSITIONAL:
            kwargs[name] = value
    return args, kwargs


def _encode(value: Any, path: str, owner: str) -> Any:
    """``value`` as JSON, tagging what is not plain JSON.

    ``path`` names the argument (``tools[0]``) and ``owner`` the module class, for the
    InputError raised when a value cannot be sent.
    """
    where = f"argument `{path}` of {owner}"
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Module):
        return {TAG: "program", "spec": program_to_spec(value).model_dump(mode="json")}
    if isinstance(value, type) and issubclass(value, Signature):
        try:
            return {TAG: "signature", "json": value.to_json()}
        except SignatureError as exc:
            raise InputError(
                f"The {where} is a signature that cannot be sent as JSON: {exc.message}",
                context={"argument": where},
            ) from exc
    if isinstance(value, Tool):
        return _encode_tool(value, where)
    if isinstance(value, Example):
        return _encode_example(value, where)
    if isinstance(value, Embedder):
        return {TAG: "embedder", **embedder_to_json(value, where)}
    if isinstance(value, list | tuple):
        return [_encode(item, f"{path}[{index}]", owner) for index, item in enumerate(value)]
    if isinstance(value, dict):
        check_json_keys(value, where)
        items = {key: _encode(item, f"{path}[{key!r}]", owner) for key, item in value.items()}
        return {TAG: "dict", "items": items} if TAG in value else items
    if isinstance(value, type) or inspect.isroutine(value):
        return {TAG: "import", "path": import_path_of(value, f"the {where}")}
    raise InputError(
        f"The {where} is a {type(value).__name__} ({value!r:.80}), which cannot be sent as JSON. "
        "Pass JSON values, signatures, modules or module-level functions (build objects such "
        "as retrievers inside the program, from arguments like these).",
        context={"argument": where, "type": type(value).__name__},
    )


def check_json_keys(value: Mapping[Any, Any], where: str) -> None:
    """InputError when a dict bound for JSON has keys that are not strings."""
    bad_keys = [key for key in value if not isinstance(key, str)]
    if bad_keys:
        raise InputError(
            f"The {where} is a dict with non-string keys {bad_keys!r}; JSON keys are strings.",
            context={"argument": where},
        )


def _encode_example(example: Example, where: str) -> dict[str, Any]:
    fields = dict(example.items())
    require_json(fields, f"The {where} is an example whose fields are", where)
    keys = example._input_keys
    return {TAG: "example", "fields": fields, "inputs": None if keys is None else sorted(keys)}


def _encode_tool(tool: Tool, where: str) -> dict[str, Any]:
    path = import_path_of(tool.func, f"the {where} (tool {tool.name!r})")
    rebuilt = Tool(tool.func, name=tool.name, desc=tool.desc, arg_desc=tool.arg_desc)
    if str(rebuilt) != str(tool):
        raise InputError(
            f"The {where} (tool {tool.name!r}) overrides its args or arg_types, which cannot be "
            "sent as JSON; describe the arguments with the function's signature and type hints.",
            context={"argument": where, "tool": tool.name},
        )
    return {
        TAG: "tool",
        "func": path,
        "name": tool.name,
        "desc": tool.desc,
        "arg_desc": dict(tool.arg_desc),
    }


# --- worker side: spec -> program -------------------------------------------------------


def program_from_spec(
    spec: ProgramSpec | Mapping[str, Any], allowed_prefixes: Sequence[str] | None = None
) -> Module:
    """Rebuild the program described by ``spec`` (a ProgramSpec or its JSON dict).

    ``allowed_prefixes`` limits the modules any import path may come from; ``None`` uses
    the ``allowed_imports`` setting (``DSPYQ_ALLOWED_IMPORTS``; unset: anything). Raises
    InputError (malformed spec, arguments that do not fit), ConfigurationError (refused or
    missing imports) or StateError (state or signatures that do not fit the program).
    """
    checked = _validated(spec)
    allowed = configured_prefixes(allowed_prefixes)
    if checked.dspyq_version != _dspyq_version():
        logger.warning(
            "Program spec %s was made by dspyq %s; this process runs %s",
            checked.kind,
            checked.dspyq_version,
            _dspyq_version(),
        )
    cls = resolve_import(checked.kind, allowed)
    if not (isinstance(cls, type) and issubclass(cls, Module)):
        raise InputError(
            f"Program kind {checked.kind!r} is not a dspyq Module class.",
            context={"kind": checked.kind},
        )
    args = _decode(checked.args, allowed)
    kwargs = _decode(checked.init, allowed)
    try:
        program = cls(*args, **kwargs)
    except DspyqError:
        raise
    except Exception as exc:
        raise InputError(
            f"Cannot build {checked.kind} from the spec's arguments {sorted(kwargs)}: "
            f"{type(exc).__name__}: {exc}",
            context={"kind": checked.kind, "arguments": sorted(kwargs)},
        ) from exc
    _apply_signatures(program, checked, allowed)
    if checked.state:
        program.load_state(checked.state)
    if checked.privacy is not None:
        program.privacy = checked.privacy
    return program


def _validated(spec: ProgramSpec | Mapping[str, Any]) -> ProgramSpec:
    if isinstance(spec, ProgramSpec):
        return spec
    try:
        return ProgramSpec.model_validate(spec)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise InputError(f"Malformed program spec: {problems}") from exc


def _apply_signatures(program: Module, spec: ProgramSpec, allowed: Sequence[str] | None) -> None:
    """Give each predictor the exact signature it had (types included, which state lacks)."""
    predictors = dict(program.named_predictors())
    unexpected = sorted(set(spec.signatures) - set(predictors))
    if unexpected:
        raise StateError(
            f"The spec has signatures for predictors {unexpected} that {spec.kind} does not "
            f"have (its predictors are {sorted(predictors)}); sender and worker may run "
            "different versions of the code.",
            context={"unexpected": unexpected, "expected": sorted(predictors)},
        )
    for name, data in spec.signatures.items():
        predictors[name].signature = _decode_signature(
            data, allowed, f"predictor {name!r}", StateError
        )


def _decode_signature(
    data: Any, allowed: Sequence[str] | None, where: str, error: type[DspyqError]
) -> type[Signature]:
    """Rebuild a signature; ``error`` is raised if it cannot be (StateError for a
    predictor's learned signature, InputError for an argument)."""
    if not isinstance(data, Mapping):
        raise error(f"The signature of {where} is not a JSON object.")
    # Field types named by import path are imported by from_json: check them first.
    for type_spec in (data.get("types") or {}).values():
        if isinstance(type_spec, Mapping) and type_spec.get("import_path"):
            check_import_path(str(type_spec["import_path"]), allowed)
    try:
        return Signature.from_json(data)
    except SignatureError as exc:
        raise error(
            f"The signature of {where} cannot be rebuilt: {exc.message}",
            context={"where": where},
        ) from exc


def _decode(value: Any, allowed: Sequence[str] | None) -> Any:
    """The inverse of :func:`_encode`, resolving import paths within ``allowed``."""
    if isinstance(value, list):
        return [_decode(item, allowed) for item in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(TAG)
    if tag is None:
        return {key: _decode(item, allowed) for key, item in value.items()}
    if tag == "dict":
        items = _part(value, "items")
        if not isinstance(items, dict):
            raise InputError(f"Encoded dict in program spec has items {items!r:.80}.")
        return {key: _decode(item, allowed) for key, item in items.items()}
    if tag == "signature":
        return _decode_signature(_part(value, "json"), allowed, "an argument", InputError)
    if tag == "program":
        return program_from_spec(_part(value, "spec"), allowed)
    if tag == "import":
        return resolve_import(str(_part(value, "path")), allowed)
    if tag == "example":
        example = Example(**_part(value, "fields"))
        inputs = value.get("inputs")
        return example if inputs is None else example.with_inputs(*inputs)
    if tag == "embedder":
        return embedder_from_json(value, allowed)
    if tag == "tool":
        func = resolve_import(str(_part(value, "func")), allowed)
        if not callable(func):
            raise InputError(f"Tool function {value['func']!r} is not callable.")
        return Tool(
            func,
            name=value.get("name"),
            desc=value.get("desc"),
            arg_desc=value.get("arg_desc") or None,
        )
    raise InputError(f"Unknown encoded argument {TAG}={tag!r} in program spec.")


def _part(value: dict[str, Any], key: str) -> Any:
    if key not in value:
        raise InputError(f"Encoded argument {value.get(TAG)!r} in program spec lacks {key!r}.")
    return value[key]

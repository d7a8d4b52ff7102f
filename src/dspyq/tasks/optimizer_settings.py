"""An optimizer's constructor settings as JSON, read off the optimizer and rebuilt on a worker.

Optimizers keep each constructor parameter as an attribute of the same name (what
``Teleprompter.get_params`` reports), or where the registry says (see
:mod:`dspyq.optimize.registry`). The client reads every parameter of the class's
constructor (a ``**kwargs`` parameter: the attribute of that name when it holds them,
else the base class's constructor parameters) and encodes its value: JSON values as
they are, LMs as their model and request options (the worker builds its own, with its
own credentials and limits), nested optimizers as ``{class, settings}``, examples,
programs, Embedders (their settings), and module-level functions as import paths. Anything else is refused here,
naming the parameter, rather than on a worker. The top-level metric is left out: a run
carries it as ``RunPlan.metric``.

Nothing here imports Celery.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from dspyq.core.example import Example
from dspyq.core.imports import import_path_of, resolve_import
from dspyq.core.module import Module
from dspyq.core.program import check_json_keys, program_from_spec, program_to_spec
from dspyq.errors import InputError
from dspyq.lm.embedder import Embedder
from dspyq.lm.embedder_json import embedder_from_json, embedder_to_json
from dspyq.lm.lm import LM
from dspyq.optimize.registry import optimizer_class, optimizer_name, registration
from dspyq.optimize.teleprompter import Teleprompter

__all__ = ["capture", "constructor_parameters", "rebuild"]

TAG = "$dspyq"
METRIC = "metric"
_MISSING = object()

LMFactory = Callable[[str, dict[str, Any]], LM]
"""Builds a worker's LM from a model string and request options."""


def constructor_parameters(cls: type) -> Iterator[inspect.Parameter]:
    """The named parameters ``cls(...)`` takes, a ``**kwargs`` one included (its own
    and, after it, those of the first base class constructor it may forward to)."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is object or klass is Teleprompter:
            return
        forwards = False
        for parameter in list(inspect.signature(init).parameters.values())[1:]:
            if parameter.name in seen:
                continue
            seen.add(parameter.name)
            forwards = forwards or parameter.kind is inspect.Parameter.VAR_KEYWORD
            yield parameter
        if not forwards:
            return


def capture(optimizer: Teleprompter, *, nested: bool = False) -> dict[str, Any]:
    """The JSON settings that rebuild ``optimizer`` (its metric aside unless ``nested``);
    InputError names a parameter that cannot be read or sent."""
    cls = type(optimizer)
    found = registration(cls)
    if found is not None and found.refusal is not None:
        raise InputError(
            f"{cls.__name__} cannot run on the queue: {found.refusal}",
            context={"optimizer": cls.__name__},
        )
    aliases = {} if found is None else found.attributes
    settings: dict[str, Any] = {}
    for parameter in constructor_parameters(cls):
        name = parameter.name
        if name == METRIC and not nested:
            continue
        where = f"{cls.__name__} parameter {name!r}"
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            raise InputError(
                f"{cls.__name__} takes *{name}, which a run cannot capture; "
                "give the optimizer named parameters",
                context={"optimizer": cls.__name__, "parameter": name},
            )
        value = _read(optimizer, aliases.get(name, name))
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            if isinstance(value, Mapping):  # kept as given: e.g. few_shot_bootstrap_args
                settings.update({str(k): _encode(v, f"{where}[{k!r}]") for k, v in value.items()})
            continue  # else forwarded to the base constructor, read next
        if value is _MISSING:
            raise InputError(
                f"{where} is not kept as an attribute of that name, so a worker cannot "
                "rebuild the optimizer; keep it as self." + name + " or compile in-process",
                context={"optimizer": cls.__name__, "parameter": name},
            )
        settings[name] = _encode(value, where)
    return settings


def _read(optimizer: Any, path: str) -> Any:
    value = optimizer
    for part in path.split("."):
        value = getattr(value, part, _MISSING)
        if value is _MISSING:
            return _MISSING
    return value


def _encode(value: Any, where: str) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, LM):
        options = {k: v for k, v in value.kwargs.items() if v is not None}
        _check_json(options, f"the request options of the LM in {where}")
        return {TAG: "lm", "model": value.model, "kwargs": options}
    if isinstance(value, Embedder):  # e.g. KNNFewShot's vectorizer
        return {TAG: "embedder", **embedder_to_json(value, where)}
    if isinstance(value, Teleprompter):
        cls = type(value)
        settings = capture(value, nested=True)
        return {TAG: "optimizer", "class": optimizer_name(cls), "settings": settings}
    if isinstance(value, Example):
        fields = dict(value.items())
        _check_json(fields, f"the example in {where}")
        return {TAG: "example", "fields": fields, "inputs": sorted(value.inputs().keys())}
    if isinstance(value, Module):
        return {TAG: "program", "spec": program_to_spec(value).model_dump(mode="json")}
    if isinstance(value, list | tuple):
        return [_encode(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        check_json_keys(value, where)
        items = {key: _encode(item, f"{where}[{key!r}]") for key, item in value.items()}
        return {TAG: "dict", "items": items} if TAG in value else items
    if isinstance(value, type) or inspect.isroutine(value):  # by import path
        return {TAG: "import", "path": import_path_of(value, where)}
    raise InputError(
        f"{where} is a {type(value).__name__} ({value!r:.80}), which a run cannot send as "
        "JSON; pass JSON values, LMs, optimizers, examples, programs or module-level functions",
        context={"parameter": where, "type": type(value).__name__},
    )


def _check_json(value: Any, where: str) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where} is not JSON ({exc})", context={"parameter": where}) from None


def rebuild(
    name: str,
    settings: Mapping[str, Any],
    *,
    metric: Callable[..., Any] | None,
    make_lm: LMFactory,
    allowed: Sequence[str] | None = None,
) -> Teleprompter:
    """The optimizer a run names, built from its captured ``settings`` (with ``metric``
    when its constructor takes one and the settings do not hold it)."""
    cls = optimizer_class(name, allowed)
    kwargs = {key: _decode(value, make_lm, allowed) for key, value in settings.items()}
    takes = {p.name for p in constructor_parameters(cls)}
    if metric is not None and METRIC in takes and METRIC not in kwargs:
        kwargs[METRIC] = metric
    optimizer = cls(**kwargs)
    if not isinstance(optimizer, Teleprompter):
        raise InputError(f"optimizer {name!r} is not a Teleprompter", context={"optimizer": name})
    return optimizer


def _decode(value: Any, make_lm: LMFactory, allowed: Sequence[str] | None) -> Any:
    if isinstance(value, list):
        return [_decode(item, make_lm, allowed) for item in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(TAG)
    if tag is None:
        return {key: _decode(item, make_lm, allowed) for key, item in value.items()}
    if tag == "dict":
        return {key: _decode(item, make_lm, allowed) for key, item in value["items"].items()}
    if tag == "lm":
        return make_lm(str(value["model"]), dict(value["kwargs"]))
    if tag == "optimizer":
        return rebuild(
            str(value["class"]), value["settings"], metric=None, make_lm=make_lm, allowed=allowed
        )
    if tag == "example":
        return Example(**value["fields"]).with_inputs(*value["inputs"])
    if tag == "program":
        return program_from_spec(value["spec"], allowed)
    if tag == "import":
        return resolve_import(str(value["path"]), allowed)
    if tag == "embedder":
        return embedder_from_json(value, allowed)
    raise InputError(f"unknown encoded optimizer setting {TAG}={tag!r}")

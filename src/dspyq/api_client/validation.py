"""Check a job's inputs against its program before anything is enqueued, and a method's
keyword options against those it takes."""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterable, Mapping
from typing import Any

from dspyq.core.module import Module
from dspyq.errors import InputError


def _signature_of(program: Module) -> Any:
    """The signature whose inputs the program takes, for Predict-like modules.

    ``input_signature`` wins where a module's predictor takes inputs the module makes
    itself (MultiChainComparison's ``reasoning_attempt_N``)."""
    declared = getattr(program, "input_signature", None)
    if declared is not None and hasattr(declared, "validate_inputs"):
        return declared
    for holder in (program, getattr(program, "predict", None)):
        signature = getattr(holder, "signature", None)
        if signature is not None and hasattr(signature, "validate_inputs"):
            return signature
    return None


def validate_program_inputs(program: Module, inputs: dict[str, Any]) -> None:
    """Raise :class:`InputError` naming the missing, unexpected or mistyped input."""
    params = inspect.signature(program.forward).parameters.values()
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    if not takes_any:
        try:
            inspect.signature(program.forward).bind(**inputs)
        except TypeError as exc:
            raise InputError(
                f"inputs do not fit {type(program).__name__}.forward: {exc}",
                context={"program": type(program).__name__, "inputs": sorted(inputs)},
            ) from None
        return
    # Named parameters of forward (MultiChainComparison's ``completions``) are not fields.
    named = {p.name: p for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    for name, param in named.items():
        if param.default is param.empty and name not in inputs:
            raise InputError(
                f"inputs do not fit {type(program).__name__}.forward: missing argument {name!r}",
                context={"program": type(program).__name__, "inputs": sorted(inputs)},
            )
    signature = _signature_of(program)
    if signature is not None:
        signature.validate_inputs({k: v for k, v in inputs.items() if k not in named})


def validate_input_json(inputs: dict[str, Any], max_bytes: int) -> None:
    """Raise :class:`InputError` unless ``inputs`` are JSON of at most ``max_bytes``.

    The limit (``DSPYQ_MAX_INPUT_BYTES``) keeps one job from filling Redis, the result
    backend and the ``executions`` table with a single huge message; it is checked here,
    on the client, so nothing of an oversize job is ever enqueued.
    """
    try:
        # allow_nan=False: NaN/Infinity are not JSON and other readers would refuse them.
        encoded = json.dumps(inputs, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"inputs must be JSON values (str, numbers, lists, dicts): {exc}"
        ) from None
    size = len(encoded.encode("utf-8", errors="surrogatepass"))
    if size > max_bytes:
        sizes = {k: len(json.dumps(v, ensure_ascii=False)) for k, v in inputs.items()}
        largest = max(sizes, key=sizes.__getitem__, default="")
        raise InputError(
            f"inputs are {size} bytes as JSON, over the limit of {max_bytes} bytes "
            f"(largest field: `{largest}`); raise DSPYQ_MAX_INPUT_BYTES or send less",
            context={"size_bytes": size, "max_input_bytes": max_bytes, "largest_field": largest},
        )


def check_options(options: Mapping[str, Any], accepted: Iterable[str], method: str) -> None:
    """InputError naming the options ``method`` does not take (a misspelt keyword would
    otherwise be a TypeError from deep inside)."""
    known = sorted(accepted)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise InputError(
            f"{method}() takes no option {', '.join(unknown)}; its options: {', '.join(known)}",
            context={"unknown": unknown},
        )

"""Check a job's inputs against its program before anything is enqueued."""

from __future__ import annotations

import inspect
from typing import Any

from dspyq.core.module import Module
from dspyq.errors import InputError


def _signature_of(program: Module) -> Any:
    """The signature whose inputs the program takes, for Predict-like modules."""
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
    signature = _signature_of(program)
    if signature is not None:
        signature.validate_inputs(inputs)

"""Predict: the basic predictor, one LM call through an adapter for one signature.

Mirrors ``dspy.Predict``: it owns the learnable state (demos, signature instructions,
an optional LM) that optimizers tune and that :meth:`Module.save` writes.
"""

from __future__ import annotations

import random
from typing import Any

from pydantic import BaseModel

from dspyq.core.context import current
from dspyq.core.example import Example, Prediction
from dspyq.core.module import Module, Parameter
from dspyq.core.predict_inputs import (
    generation_config,
    positional_arguments_error,
    prepare_inputs,
)
from dspyq.core.signature import Signature, make_signature
from dspyq.core.stream_listener import stream_scope
from dspyq.errors import NoLMConfiguredError, StateError

NO_LM_MESSAGE = (
    "No LM is loaded. Please configure the LM using `dspyq.configure(lm=dspyq.LM(...))`. "
    "e.g, `dspyq.configure(lm=dspyq.LM('openai/gpt-4o-mini'))`"
)


def ensure_signature(signature: str | type[Signature]) -> type[Signature]:
    """A class for ``"question -> answer"``; anything else is kept as given.

    As DSPy 3.4.1, ``Predict(42)`` or ``Predict(None)`` builds, and the first use of
    the signature fails with the same AttributeError DSPy raises there
    (``'int' object has no attribute 'input_fields'``, ``... 'prepend'``).
    """
    if isinstance(signature, str):
        return make_signature(signature)
    return signature


def _json_value(value: Any) -> Any:
    """A demo value as stored in state: pydantic objects in their JSON form."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return {key: _json_value(item) for key, item in value.items()}
    return value


class Predict(Module, Parameter):
    """Predict the output fields of ``signature`` from its input fields.

    ``Predict("question -> answer", temperature=0.7)(question="...")`` returns a
    :class:`Prediction`. ``config`` is passed to the LM call (``temperature``, ``n``,
    ``max_tokens`` ...).
    """

    def __init__(
        self,
        signature: str | type[Signature],
        callbacks: list[Any] | None = None,
        **config: Any,
    ) -> None:
        super().__init__(callbacks=callbacks)
        self.stage = random.randbytes(8).hex()
        self.signature: type[Signature] = ensure_signature(signature)
        self.config: dict[str, Any] = config
        self.reset()

    def reset(self) -> None:
        self.lm: Any = None
        self.traces: list[Any] = []
        self.train: list[Any] = []
        self.demos: list[Any] = []

    def update_config(self, **kwargs: Any) -> None:
        self.config = {**self.config, **kwargs}

    def get_config(self) -> dict[str, Any]:
        return self.config

    # --- state --------------------------------------------------------------------

    def dump_state(self, json_mode: bool = True) -> dict[str, Any]:
        demos: list[Any] = []
        for demo in self.demos:
            # Every key, internal ``dspy_*`` ones included, so a save/load round trip is exact.
            items = (
                demo.items(include_dspy=True) if isinstance(demo, Example) else dict(demo).items()
            )
            if json_mode:
                demos.append({key: _json_value(value) for key, value in items})
            else:
                demos.append(demo)
        lm_state = self.lm.dump_state() if self.lm is not None else None
        return {
            "traces": list(self.traces),
            "train": list(self.train),
            "demos": demos,
            "signature": self.signature.dump_state(),
            "lm": lm_state,
        }

    def load_state(self, state: dict[str, Any], allow_unsafe_lm_state: bool = False) -> Predict:
        from dspyq.core.state import lm_from_state, validate_predictor_state

        checked = validate_predictor_state("self", state)
        saved_fields = len(checked.signature.fields)
        own_fields = len(self.signature.fields)
        if saved_fields != own_fields:
            raise StateError(
                f"Saved signature has {saved_fields} fields but {self.signature.signature!r} "
                f"has {own_fields}; the file was saved from a different program.",
                context={"saved_fields": saved_fields, "expected_fields": own_fields},
            )
        for key, value in state.items():
            if key not in ("signature", "lm", "demos", "traces", "train"):
                setattr(self, key, value)  # e.g. DSPy's optional ``fields`` entry
        self.traces = list(state.get("traces", []))
        self.train = list(state.get("train", []))
        self.demos = [Example(**demo) for demo in state.get("demos", [])]
        self.signature = self.signature.load_state(state["signature"])
        lm_state = state.get("lm")
        self.lm = lm_from_state(lm_state, allow_unsafe_lm_state) if lm_state else None
        return self

    # --- running ------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if args:
            raise positional_arguments_error("dspyq.Predict", self.signature)
        return super().__call__(**kwargs)

    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        if args:
            raise positional_arguments_error("dspyq.Predict", self.signature)
        return await super().acall(**kwargs)

    def _prepare(
        self, kwargs: dict[str, Any]
    ) -> tuple[Any, dict[str, Any], type[Signature], list[dict[str, Any]], dict[str, Any]]:
        """Split call kwargs into (lm, lm config, signature, demos, inputs), as DSPy does."""
        signature = ensure_signature(kwargs.pop("signature", self.signature))
        demos = kwargs.pop("demos", self.demos)
        config = {**self.config, **kwargs.pop("config", {})}
        lm = kwargs.pop("lm", None) or self.lm or current().lm
        if lm is None:
            raise NoLMConfiguredError(NO_LM_MESSAGE)
        if isinstance(lm, str):
            raise NoLMConfiguredError(
                f"lm must be an LM object, not the string {lm!r}; use dspyq.LM({lm!r})"
            )
        config = generation_config(config, lm)
        # As in DSPy: defaults filled in, problems only warned about (see predict_inputs).
        inputs = prepare_inputs(signature, kwargs)
        return lm, config, signature, [_demo_dict(demo) for demo in demos], inputs

    def _finish(
        self, completions: list[dict[str, Any]], signature: type[Signature], inputs: dict[str, Any]
    ) -> Prediction:
        prediction = Prediction.from_completions(completions, signature=signature)
        config = current()
        trace = config.trace
        if trace is not None:
            limit = config.get("max_trace_size", 10_000)
            if limit and len(trace) >= limit:
                trace.pop(0)
            trace.append((self, dict(inputs), prediction))
        return prediction

    def forward(self, **kwargs: Any) -> Prediction:
        lm, config, signature, demos, inputs = self._prepare(kwargs)
        adapter = current().adapter or _default_adapter()
        with stream_scope(self):
            completions = adapter(
                lm, lm_kwargs=config, signature=signature, demos=demos, inputs=inputs
            )
        return self._finish(completions, signature, inputs)

    async def aforward(self, **kwargs: Any) -> Prediction:
        lm, config, signature, demos, inputs = self._prepare(kwargs)
        adapter = current().adapter or _default_adapter()
        with stream_scope(self):
            completions = await adapter.acall(
                lm, lm_kwargs=config, signature=signature, demos=demos, inputs=inputs
            )
        return self._finish(completions, signature, inputs)

    def __repr__(self) -> str:
        spec = getattr(self.signature, "signature", self.signature)  # Predict(42) shows 42
        return f"{type(self).__name__}({spec})"


def _demo_dict(demo: Any) -> dict[str, Any]:
    """Demos reach the adapter as plain dicts of their (visible) fields."""
    if isinstance(demo, Example):
        return dict(demo.items())
    return dict(demo)


def _default_adapter() -> Any:
    from dspyq.adapters import ChatAdapter

    return ChatAdapter()

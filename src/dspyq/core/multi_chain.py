"""MultiChainComparison: compare M reasoning attempts and produce one corrected answer.

As DSPy 3.4.1 builds it: the signature gains inputs ``reasoning_attempt_1..M`` (each
attempt summarised as its first rationale line and its answer) and a leading
``rationale`` output, and a single Predict call weighs the attempts.
"""

from __future__ import annotations

from typing import Any

from dspyq.core.module import Module
from dspyq.core.predict import Predict, ensure_signature
from dspyq.core.signature import InputField, OutputField, Signature

RATIONALE_PREFIX = "Accurate Reasoning: Thank you everyone. Let's now holistically"


def _first_line(text: Any) -> str:
    return str(text).strip().split("\n")[0].strip()


class MultiChainComparison(Module):
    """``MultiChainComparison(sig, M=3)(completions=[...], **inputs)`` -> one Prediction."""

    def __init__(
        self,
        signature: str | type[Signature],
        M: int = 3,
        temperature: float = 0.7,
        **config: Any,
    ) -> None:
        super().__init__()
        self.M = M
        extended = ensure_signature(signature)
        self.input_signature = extended  # what a caller passes besides `completions`
        *_, self.last_key = extended.output_fields.keys()
        for index in range(1, M + 1):
            attempt = InputField(prefix=f"Student Attempt #{index}:", desc="${reasoning attempt}")
            extended = extended.append(f"reasoning_attempt_{index}", attempt)
        rationale = OutputField(prefix=RATIONALE_PREFIX, desc="${corrected reasoning}")
        extended = extended.prepend("rationale", rationale)
        self.predict = Predict(extended, temperature=temperature, **config)

    def forward(self, completions: list[Any], **kwargs: Any) -> Any:
        attempts = []
        for completion in completions:
            rationale = _first_line(completion.get("rationale", completion.get("reasoning")))
            answer = _first_line(completion[self.last_key])
            attempts.append(
                f"«I'm trying to {rationale} I'm not sure but my prediction is {answer}»"
            )
        if len(attempts) != self.M:  # DSPy asserts: the same error class and message, even under -O
            raise AssertionError(
                f"The number of attempts ({len(attempts)}) doesn't match the expected number M "
                f"({self.M}). Please set the correct value for M when initializing MultiChainComparison."
            )
        inputs = {f"reasoning_attempt_{i}": text for i, text in enumerate(attempts, 1)}
        return self.predict(**{**inputs, **kwargs})

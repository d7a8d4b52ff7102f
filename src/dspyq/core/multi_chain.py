"""MultiChainComparison: one more LM call that weighs M earlier attempts and answers."""

from __future__ import annotations

from typing import Any

from dspyq.core.module import Module
from dspyq.core.predict import Predict, ensure_signature
from dspyq.core.signature import InputField, OutputField, Signature
from dspyq.errors import InputError


class MultiChainComparison(Module):
    """Show the LM ``M`` student attempts and ask for a corrected ``rationale`` and answer.

    The extended signature (attempt inputs ``reasoning_attempt_1..M``, a ``rationale``
    output first) and the attempt wording are DSPy 3.4.1's, so prompts are identical.
    """

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
        self.last_key = list(extended.output_fields)[-1]
        for idx in range(1, M + 1):
            field = InputField(prefix=f"Student Attempt #{idx}:", desc="${reasoning attempt}")
            extended = extended.append(f"reasoning_attempt_{idx}", field)
        rationale = OutputField(
            prefix="Accurate Reasoning: Thank you everyone. Let's now holistically",
            desc="${corrected reasoning}",
        )
        extended = extended.prepend("rationale", rationale)
        self.predict = Predict(extended, temperature=temperature, **config)

    def _attempts(self, completions: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        attempts = []
        for completion in completions:
            rationale = completion.get("rationale", completion.get("reasoning"))
            rationale = str(rationale).strip().split("\n")[0].strip()
            answer = str(completion[self.last_key]).strip().split("\n")[0].strip()
            attempts.append(
                f"«I'm trying to {rationale} I'm not sure but my prediction is {answer}»"
            )
        if len(attempts) != self.M:
            raise InputError(
                f"The number of attempts ({len(attempts)}) doesn't match the expected number M "
                f"({self.M}). Please set the correct value for M when initializing "
                "MultiChainComparison."
            )
        named = {f"reasoning_attempt_{i}": text for i, text in enumerate(attempts, start=1)}
        return {**named, **kwargs}

    def forward(self, completions: Any, **kwargs: Any) -> Any:
        return self.predict(**self._attempts(completions, kwargs))

    async def aforward(self, completions: Any, **kwargs: Any) -> Any:
        return await self.predict.acall(**self._attempts(completions, kwargs))

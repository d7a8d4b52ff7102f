"""ChainOfThought: Predict with a ``reasoning`` output produced before the answer."""

from __future__ import annotations

from typing import Any

from pydantic.fields import FieldInfo

from dspyq.core.module import Module
from dspyq.core.predict import Predict, ensure_signature
from dspyq.core.signature import OutputField, Signature

# As DSPy 3.4.1 builds it (checked against its prompts and saved programs).
REASONING_PREFIX = "Reasoning:"
REASONING_DESC = "${reasoning}"


class ChainOfThought(Module):
    """Ask the LM to reason step by step, then give the signature's outputs.

    ``ChainOfThought("question -> answer").predict.signature`` is the extended
    signature ``question -> reasoning, answer``; the Prediction carries ``reasoning``.
    """

    def __init__(
        self,
        signature: str | type[Signature],
        rationale_field: FieldInfo | None = None,
        rationale_field_type: Any = str,
        **config: Any,
    ) -> None:
        super().__init__()
        base = ensure_signature(signature)
        # The prefix comes from the name ("Reasoning:"); passing it would warn, as in DSPy.
        field = rationale_field or OutputField(desc=REASONING_DESC)
        if rationale_field is not None:
            rationale_field_type = rationale_field.annotation
        extended = base.prepend("reasoning", field, type_=rationale_field_type)
        self.predict = Predict(extended, **config)

    def forward(self, **kwargs: Any) -> Any:
        return self.predict(**kwargs)

    async def aforward(self, **kwargs: Any) -> Any:
        return await self.predict.acall(**kwargs)

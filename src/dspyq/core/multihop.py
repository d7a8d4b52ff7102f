"""MultiHopQA: answer a complex question by decomposing it, answering each part, and
synthesizing the parts into one answer.

The three steps are separate methods whose arguments are plain JSON values (and whose
results are a list of strings or a Prediction, ``toDict()``-able), so the distributed
runner can execute each as its own task (decompose, then a group of ``answer_hop``
tasks, then ``synthesize``); :meth:`MultiHopQA.forward` runs them in-process.
"""

from __future__ import annotations

import asyncio
from typing import Any

from dspyq.core.chain_of_thought import ChainOfThought
from dspyq.core.example import Prediction
from dspyq.core.module import Module
from dspyq.core.signature import make_signature

DECOMPOSE_INSTRUCTIONS = (
    "Break the complex question into the simpler sub-questions that must be answered, "
    "in order, to answer it. Each sub-question must stand on its own."
)
ANSWER_INSTRUCTIONS = "Answer the question with a short factual answer."
SYNTHESIZE_INSTRUCTIONS = (
    "Answer the complex question using the answers found for its sub-questions."
)


class MultiHopQA(Module):
    """Decompose -> answer each sub-question -> synthesize, with at most ``max_hops`` hops."""

    def __init__(self, max_hops: int = 3) -> None:
        super().__init__()
        if max_hops < 1:
            raise ValueError("max_hops must be at least 1")
        self.max_hops = max_hops
        self.decomposer = ChainOfThought(
            make_signature("question -> sub_questions: list[str]", DECOMPOSE_INSTRUCTIONS)
        )
        self.hop_answerer = ChainOfThought(
            make_signature("question -> answer", ANSWER_INSTRUCTIONS)
        )
        self.synthesizer = ChainOfThought(
            make_signature(
                "question, sub_questions: list[str], sub_answers: list[str] -> answer",
                SYNTHESIZE_INSTRUCTIONS,
            )
        )

    def decompose(self, question: str) -> list[str]:
        """Step 1: the sub-questions to answer (at most ``max_hops``, blanks dropped)."""
        prediction = self.decomposer(question=question)
        return _clean(prediction.sub_questions, self.max_hops) or [question]

    def answer_hop(self, sub_question: str) -> Prediction:
        """Step 2, once per sub-question: ``reasoning`` and ``answer`` for it."""
        prediction: Prediction = self.hop_answerer(question=sub_question)
        return prediction

    def synthesize(
        self, question: str, sub_questions: list[str], sub_answers: list[str]
    ) -> Prediction:
        """Step 3: the final ``answer`` (with ``reasoning``) from the hops' answers."""
        prediction: Prediction = self.synthesizer(
            question=question, sub_questions=sub_questions, sub_answers=sub_answers
        )
        return prediction

    def forward(self, question: str) -> Prediction:
        sub_questions = self.decompose(question)
        sub_answers = [str(self.answer_hop(q).answer) for q in sub_questions]
        final = self.synthesize(question, sub_questions, sub_answers)
        return Prediction(**final, sub_questions=sub_questions, sub_answers=sub_answers)

    async def aforward(self, question: str) -> Prediction:
        """As :meth:`forward`, with the hops answered concurrently."""
        decomposed = await self.decomposer.acall(question=question)
        sub_questions = _clean(decomposed.sub_questions, self.max_hops) or [question]
        hops = await asyncio.gather(*(self.hop_answerer.acall(question=q) for q in sub_questions))
        sub_answers = [str(hop.answer) for hop in hops]
        final = await self.synthesizer.acall(
            question=question, sub_questions=sub_questions, sub_answers=sub_answers
        )
        return Prediction(**final, sub_questions=sub_questions, sub_answers=sub_answers)


def _clean(sub_questions: Any, max_hops: int) -> list[str]:
    """Non-blank sub-questions, at most ``max_hops`` of them."""
    cleaned = [str(q).strip() for q in sub_questions or []]
    return [q for q in cleaned if q][:max_hops]

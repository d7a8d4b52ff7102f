"""Programs a worker imports for the adapter tests: each sets its adapter where it runs."""

from __future__ import annotations

from typing import Any

import dspyq


class XMLQA(dspyq.Module):
    """Predict ``question -> answer: int`` through XMLAdapter."""

    def __init__(self) -> None:
        super().__init__()
        self.predict = dspyq.Predict("question -> answer: int")

    def forward(self, question: str) -> Any:
        with dspyq.context(adapter=dspyq.XMLAdapter()):
            return self.predict(question=question)


def longest_answer(outputs: list[Any]) -> Any:
    """An Ensemble reduce_fn: the prediction with the longest answer."""
    return max(outputs, key=lambda prediction: len(str(prediction.answer)))

"""Multi-predictor programs for the optimizer-path tests, imported by worker processes by
path (their PYTHONPATH includes this directory), as a user's own modules would be."""

from __future__ import annotations

from typing import Any

import dspyq


class TwoStep(dspyq.Module):
    """A draft (ChainOfThought) then an answer (Predict) reading it."""

    def __init__(self) -> None:
        super().__init__()
        self.draft = dspyq.ChainOfThought("question -> draft")
        self.final = dspyq.Predict("question, draft -> answer")

    def forward(self, question: str) -> Any:
        draft = self.draft(question=question).draft
        return self.final(question=question, draft=draft)


class Review(dspyq.Module):
    def __init__(self) -> None:
        super().__init__()
        self.critique = dspyq.Predict("question, draft -> verdict")
        self.revise = dspyq.ChainOfThought("question, verdict -> revised")

    def forward(self, question: str, draft: str) -> Any:
        verdict = self.critique(question=question, draft=draft).verdict
        return self.revise(question=question, verdict=verdict)


class ThreeStep(dspyq.Module):
    """A nested two-predictor module between two predictors of the outer one."""

    def __init__(self) -> None:
        super().__init__()
        self.draft = dspyq.Predict("question -> draft")
        self.review = Review()
        self.final = dspyq.Predict("question, revised -> answer")

    def forward(self, question: str) -> Any:
        draft = self.draft(question=question).draft
        revised = self.review(question=question, draft=draft).revised
        return self.final(question=question, revised=revised)

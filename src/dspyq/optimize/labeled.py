"""``LabeledFewShot``: put ``k`` labelled training examples into every predictor's prompt.

The simplest optimizer, as DSPy's: no LM call, no metric. ``BootstrapFewShot`` also
uses it to give its teacher demos before running it.
"""

from __future__ import annotations

import random

from dspyq.core.module import Module
from dspyq.optimize.teleprompter import CompileInputs, Teleprompter

__all__ = ["LabeledFewShot"]


class LabeledFewShot(Teleprompter):
    """Give each predictor of the student ``k`` demos drawn from the trainset.

    With ``sample=True`` (the default) each predictor gets its own random sample (one
    ``random.Random(0)`` shared by the predictors, so the result is reproducible);
    with ``sample=False`` every predictor gets the first ``k`` examples.
    """

    def __init__(self, k: int = 16) -> None:
        self.k = k

    def _compile(
        self,
        inputs: CompileInputs,
        *,
        sample: bool = True,
    ) -> Module:
        """A reset copy of ``student`` whose predictors hold labelled demos.

        ``teacher`` and ``valset`` are accepted for the common call shape and not used.
        As in DSPy the result is not marked compiled: its predictors stay tunable by a
        later optimizer.
        """
        student, trainset = inputs.student, inputs.trainset
        self.student = student.reset_copy()
        self.trainset = list(trainset)
        if not self.trainset:
            return self.student
        count = min(self.k, len(self.trainset))
        rng = random.Random(0)
        for predictor in self.student.predictors():
            if sample:
                predictor.demos = rng.sample(self.trainset, count)
            else:
                predictor.demos = self.trainset[:count]
        return self.student

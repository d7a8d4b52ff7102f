"""MIPROv2's step 1: the demo sets, bootstrapped as DSPy 3.4.1 bootstraps them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dspyq.core.example import Example
from dspyq.core.module import Module
from dspyq.optimize.bootstrap import BootstrapFewShot
from dspyq.optimize.labeled import LabeledFewShot
from dspyq.optimize.mipro_state import DemoCandidates

__all__ = [
    "BOOTSTRAPPED_FEWSHOT_EXAMPLES_IN_CONTEXT",
    "LABELED_FEWSHOT_EXAMPLES_IN_CONTEXT",
    "create_demo_candidates",
]

BOOTSTRAPPED_FEWSHOT_EXAMPLES_IN_CONTEXT = 3
LABELED_FEWSHOT_EXAMPLES_IN_CONTEXT = 0


def create_demo_candidates(
    optimizer: Any,
    program: Module,
    trainset: Sequence[Example],
    teacher: Module | None = None,
) -> DemoCandidates:
    """``num_fewshot_candidates`` demo sets per predictor index.

    Set 0 is zero-shot, set 1 labelled demos only (when labelled demos are allowed),
    set 2 ``BootstrapFewShot`` over the trainset in order; the rest bootstrap over a
    shuffled trainset with 1..max_bootstrapped_demos demos, both drawn from the
    optimizer's seeded rng. A zero-shot run still bootstraps 3 demos per set, to show
    the proposer. ``optimizer`` is the MIPROv2 optimizer.
    """
    zeroshot = optimizer.max_bootstrapped_demos == 0 and optimizer.max_labeled_demos == 0
    labeled = LABELED_FEWSHOT_EXAMPLES_IN_CONTEXT if zeroshot else optimizer.max_labeled_demos
    bootstrapped = (
        BOOTSTRAPPED_FEWSHOT_EXAMPLES_IN_CONTEXT if zeroshot else optimizer.max_bootstrapped_demos
    )
    count = optimizer.num_fewshot_candidates or 0
    predictors = program.predictors()
    candidates: DemoCandidates = {i: [] for i in range(len(predictors))}
    for set_seed in range(-3, count - 3):
        examples = list(trainset)
        if set_seed == -3:
            built = program.reset_copy()
        elif set_seed == -2 and labeled > 0:
            built = LabeledFewShot(k=labeled).compile(program, trainset=examples, sample=True)
        else:
            size, threshold = bootstrapped, None
            if set_seed != -1:  # DSPy: seed -2 without labelled demos is shuffled too
                optimizer.rng.shuffle(examples)
                size = optimizer.rng.randint(min(1, bootstrapped), bootstrapped)
                threshold = optimizer.metric_threshold
            built = BootstrapFewShot(
                metric=optimizer.metric,
                metric_threshold=threshold,
                teacher_settings=optimizer.teacher_settings,
                max_bootstrapped_demos=size,
                max_labeled_demos=labeled,
                max_rounds=1,
                max_errors=optimizer._max_errors(),
            ).compile(program, teacher=teacher, trainset=examples)
        for i, predictor in enumerate(built.predictors()):
            candidates[i].append(list(predictor.demos))
    return candidates

"""BootstrapFewShotWithOptuna against DSPy's: the same scripted LM, the same seeded
sampler on both sides (DSPy's study is unseeded: the test gives its ``create_study`` the
sampler ours builds from ``seed``), the same trials and the same program.

The task model answers right only when the one demo in the prompt is the "3+3" one, so
the study's pick is visible in the scores.
"""

from __future__ import annotations

import re
from typing import Any

import dspy
import optuna
import pytest
from keyed_lms import DspyKeyedLM, KeyedLM, reply

from dspyq.core.context import context
from dspyq.core.example import Example
from dspyq.core.predict import Predict
from dspyq.metrics import answer_exact_match
from dspyq.optimize.optuna_fewshot import BootstrapFewShotWithOptuna

PAIRS = [("2+2", "4"), ("3+3", "6"), ("1+4", "5"), ("2+5", "7"), ("6+1", "7"), ("0+9", "9")]
SEED = 7


def respond(messages: list[dict[str, Any]], kwargs: dict[str, Any], log: list[Any]) -> str:
    contents = [str(m["content"]) for m in messages]
    log.append(contents)
    question = re.findall(r"\[\[ ## question ## \]\]\n(.*)\n", contents[-1])[-1]
    demos = " ".join(contents[1:-1])
    wrong = bool(demos) and "3+3" not in demos
    return reply(answer="0" if wrong else dict(PAIRS)[question])


def examples(cls: Any) -> list[Any]:
    return [cls(question=q, answer=a).with_inputs("question") for q, a in PAIRS]


def dspy_run(monkeypatch: pytest.MonkeyPatch, trials: int) -> tuple[Any, list[Any]]:
    real = optuna.create_study

    def seeded(**kwargs: Any) -> optuna.Study:
        return real(sampler=optuna.samplers.TPESampler(seed=SEED), **kwargs)

    log: list[Any] = []
    optimizer = dspy.BootstrapFewShotWithOptuna(
        metric=dspy.evaluate.answer_exact_match, num_candidate_programs=trials
    )
    lm = DspyKeyedLM(respond, log)
    with monkeypatch.context() as patch, dspy.context(lm=lm, adapter=dspy.ChatAdapter()):
        patch.setattr(optuna, "create_study", seeded)
        program = optimizer.compile(
            dspy.Predict("question -> answer"), max_demos=2, trainset=examples(dspy.Example)
        )
    return program, log


def dspyq_run(trials: int) -> tuple[Any, list[Any]]:
    log: list[Any] = []
    optimizer = BootstrapFewShotWithOptuna(
        metric=answer_exact_match, num_candidate_programs=trials, seed=SEED
    )
    with context(lm=KeyedLM(respond, log)):
        program = optimizer.compile(
            Predict("question -> answer"), max_demos=2, trainset=examples(Example)
        )
    return program, log


@pytest.mark.parametrize(("trials", "picked"), [(4, "2+2"), (13, "3+3")])
def test_optuna_fewshot_compiles_dspys_program(
    monkeypatch: pytest.MonkeyPatch, trials: int, picked: str
) -> None:
    """Four trials (in optuna's random start) miss the one good demo and keep the first
    trial's; thirteen find it (the last three sampled by TPE, which must agree too)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    theirs, their_log = dspy_run(monkeypatch, trials)
    ours, our_log = dspyq_run(trials)
    assert [p.demos for p in ours.predictors()] == [p.demos for p in theirs.predictors()]
    # Each trial's Evaluate runs its examples on threads (DSPy's default num_threads), so
    # the order of the requests within a trial is not fixed on either side.
    assert sorted(our_log) == sorted(their_log)
    (predictor,) = ours.predictors()
    assert predictor.demos[0]["question"] == picked


def test_optuna_fewshot_needs_max_demos() -> None:
    with pytest.raises(TypeError):
        BootstrapFewShotWithOptuna(metric=answer_exact_match).compile(  # type: ignore[call-arg]
            Predict("question -> answer"), trainset=examples(Example)
        )

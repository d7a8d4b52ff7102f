"""InferRules against DSPy's: the same scripted LM on both sides, the same compiled program.

The LM answers a rules-induction request with rules naming the request's ``rollout_id``
(so the rollouts drawn must be DSPy's), and answers a question right only when the
prompt carries the rules of the second rollout. DSPy's candidates share one signature
class, so its program carries the last candidate's rules whichever scored best: ours too.
"""

from __future__ import annotations

import random
import re
from typing import Any

import dspy
import pytest
from keyed_lms import DspyKeyedLM, KeyedLM, reply

from dspyq.core.context import context
from dspyq.core.example import Example
from dspyq.core.predict import Predict
from dspyq.errors import ConfigurationError, ContextWindowExceededError, DspyqError
from dspyq.metrics import answer_exact_match
from dspyq.optimize.infer_rules import InferRules

PAIRS = [("2+2", "4"), ("3+3", "6"), ("1+4", "5"), ("2+5", "7"), ("6+1", "7"), ("0+9", "9")]


def _rollouts(count: int) -> list[int]:
    rng = random.Random(0)
    return [rng.randint(0, 10**9) for _ in range(count)]


WINNER = _rollouts(3)[1]


def respond(messages: list[dict[str, Any]], kwargs: dict[str, Any], log: list[Any]) -> str:
    system, last = str(messages[0]["content"]), str(messages[-1]["content"])
    log.append((system, last, kwargs.get("rollout_id"), kwargs.get("temperature")))
    if "examples_text" in system:
        rollout = kwargs.get("rollout_id")
        return reply(reasoning="Look at the sums.", natural_language_rules=f" Rule {rollout}. ")
    question = re.findall(r"\[\[ ## question ## \]\]\n(.*)\n", last)[-1]
    right = dict(PAIRS)[question]
    wrong = f"Rule {WINNER}." not in system and "Rule " in system
    return reply(answer="0" if wrong else right)


def dspy_run(**options: Any) -> tuple[Any, list[Any]]:
    log: list[Any] = []
    student = dspy.Predict("question -> answer")
    trainset = [dspy.Example(question=q, answer=a).with_inputs("question") for q, a in PAIRS]
    optimizer = dspy.InferRules(
        metric=dspy.evaluate.answer_exact_match, num_candidates=3, num_rules=2, **options
    )
    with dspy.context(lm=DspyKeyedLM(respond, log), adapter=dspy.ChatAdapter()):
        program = optimizer.compile(student, trainset=trainset)
    return program, log


def dspyq_run(**options: Any) -> tuple[Any, list[Any]]:
    log: list[Any] = []
    student = Predict("question -> answer")
    trainset = [Example(question=q, answer=a).with_inputs("question") for q, a in PAIRS]
    optimizer = InferRules(metric=answer_exact_match, num_candidates=3, num_rules=2, **options)
    with context(lm=KeyedLM(respond, log)):
        program = optimizer.compile(student, trainset=trainset)
    return program, log


def demos_of(program: Any) -> list[list[dict[str, Any]]]:
    return [[dict(d.items()) for d in p.demos] for p in program.predictors()]


@pytest.mark.parametrize("options", [{}, {"max_bootstrapped_demos": 1, "max_labeled_demos": 2}])
def test_infer_rules_compiles_dspys_program(options: dict[str, Any]) -> None:
    theirs, their_log = dspy_run(**options)
    ours, our_log = dspyq_run(**options)
    assert [p.signature.instructions for p in ours.predictors()] == [
        p.signature.instructions for p in theirs.predictors()
    ]
    assert demos_of(ours) == demos_of(theirs)
    # Candidates are scored by a threaded Evaluate (DSPy's default num_threads): within a
    # candidate, the order of the requests is not fixed on either side.
    assert sorted(map(str, our_log)) == sorted(map(str, their_log))
    (predictor,) = ours.predictors()
    assert predictor.signature.instructions.endswith(
        f"Please adhere to the following rules when making your prediction:\n"
        f"Rule {_rollouts(3)[-1]}."
    )


def test_infer_rules_induces_from_every_training_example_at_temperature_one() -> None:
    _, log = dspyq_run()
    inductions = [entry for entry in log if "examples_text" in entry[0]]
    assert [entry[2] for entry in inductions] == _rollouts(3)
    assert {entry[3] for entry in inductions} == {1.0}
    # the first half of the trainset, each as input and output fields
    assert (
        "Input Fields:\nquestion: 3+3\n\n=========\nOutput Fields:\nanswer: 6" in inductions[0][1]
    )
    assert "1+4" in inductions[0][1]
    assert "2+5" not in inductions[0][1]


def test_infer_rules_refuses_no_candidates() -> None:
    with pytest.raises(ConfigurationError, match="num_candidates"):
        dspyq_run_without_candidates()


def dspyq_run_without_candidates() -> None:
    optimizer = InferRules(metric=answer_exact_match, num_candidates=0)
    trainset = [Example(question=q, answer=a).with_inputs("question") for q, a in PAIRS]
    with context(lm=KeyedLM(respond, [])):
        optimizer.compile(Predict("question -> answer"), trainset=trainset)


def test_infer_rules_drops_the_last_example_until_the_prompt_fits() -> None:
    """As DSPy: a prompt too long for the model loses its last example and is asked again;
    a single example that does not fit is a clear error."""

    def too_long_past_two(
        messages: list[dict[str, Any]], kwargs: dict[str, Any], log: list[Any]
    ) -> str:
        last = str(messages[-1]["content"])
        if "examples_text" in str(messages[0]["content"]) and last.count("Input Fields:") > 2:
            log.append("refused")
            raise ContextWindowExceededError("prompt too long")
        return respond(messages, kwargs, log)

    log: list[Any] = []
    trainset = [Example(question=q, answer=a).with_inputs("question") for q, a in PAIRS]
    optimizer = InferRules(metric=answer_exact_match, num_candidates=1, num_rules=2)
    with context(lm=KeyedLM(too_long_past_two, log)):
        program = optimizer.compile(Predict("question -> answer"), trainset=trainset)
    assert log.count("refused") == 1
    inductions = [entry for entry in log if entry != "refused" and "examples_text" in entry[0]]
    assert [entry[1].count("Input Fields:") for entry in inductions] == [2]
    assert program.predictors()[0].signature.instructions.endswith(f"Rule {_rollouts(2)[1]}.")

    def never_fits(messages: list[dict[str, Any]], kwargs: dict[str, Any], log: list[Any]) -> str:
        if "examples_text" in str(messages[0]["content"]):
            raise ContextWindowExceededError("prompt too long")
        return respond(messages, kwargs, log)

    with context(lm=KeyedLM(never_fits, [])), pytest.raises(DspyqError, match="single example"):
        InferRules(metric=answer_exact_match, num_candidates=1).compile(
            Predict("question -> answer"), trainset=trainset
        )


@pytest.mark.parametrize("name", ["InferRules", "BootstrapFewShotWithOptuna"])
def test_runs_carry_the_in_process_optimizers_as_their_constructor_settings(name: str) -> None:
    """InferRules is a BootstrapFewShot, but not one: a run rebuilds the class it was given."""
    import dspyq
    from dspyq.tasks.optimization import has_round_strategy, optimizer_config
    from dspyq.tasks.optimizer_settings import rebuild

    optimizer = getattr(dspyq, name)(metric=answer_exact_match, max_bootstrapped_demos=2)
    settings = optimizer_config(optimizer)
    assert not has_round_strategy(name) and settings["max_bootstrapped_demos"] == 2
    rebuilt = rebuild(
        name, settings, metric=answer_exact_match, make_lm=lambda model, kw: dspyq.LM(model, **kw)
    )
    assert type(rebuilt) is type(optimizer)
    assert vars(rebuilt).keys() == vars(optimizer).keys()

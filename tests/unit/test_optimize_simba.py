"""SIMBA against DSPy's: the same scripted LM, seed and trainset on both sides, the same
compiled program, candidate scores and trial logs.

The task model's answer depends on the rollout id of the LM copy it is called through
(so the rollouts SIMBA draws must be DSPy's), and is always right once the prompt holds
a demo or the prompt model's advice: strategies that work show up in the scores. The
advice names the question it was drawn from, so which bucket fed which rule is visible.
"""

from __future__ import annotations

import json
import re
from typing import Any

import dspy
import pytest
from keyed_lms import DspyKeyedLM, KeyedLM, reply

from dspyq.core.context import context
from dspyq.core.example import Example, Prediction
from dspyq.core.module import Module
from dspyq.core.predict import Predict
from dspyq.optimize.simba import SIMBA
from dspyq.optimize.simba_strategies import OfferFeedback, recursive_mask

PAIRS = [("2+2", "4"), ("3+3", "6"), ("1+4", "5"), ("2+5", "7"), ("6+1", "7"), ("0+9", "9")]


def respond(messages: list[dict[str, Any]], kwargs: dict[str, Any], log: list[Any]) -> str:
    contents = [str(m["content"]) for m in messages]
    # The program's source differs (dspy.Module vs Module): leave it out of the log.
    shown = [re.sub(r"program_code ## \]\]\n.*?\[\[", "", c, flags=re.S) for c in contents]
    log.append((shown, kwargs.get("rollout_id"), kwargs.get("temperature")))
    if "module_advice" in contents[0]:
        inputs = re.findall(r"program_inputs ## \]\]\n(.*?)\n\n", contents[-1], flags=re.S)[-1]
        question = json.loads(inputs)["question"]
        advice = {"solve": f"For {question}, add the two digits carefully."}
        return reply(discussion="The worse run guessed.", module_advice=json.dumps(advice))
    question = re.findall(r"\[\[ ## question ## \]\]\n(.*)\n", contents[-1])[-1]
    helped = len(messages) > 2 or "carefully" in contents[0]
    lucky = (int(kwargs.get("rollout_id") or 0) + sum(map(ord, question))) % 3 == 0
    return reply(answer=dict(PAIRS)[question] if helped or lucky else "0")


def exact(example: Any, prediction: Any, trace: Any = None) -> float:
    return float(prediction is not None and example.answer == prediction.answer)


class DspyProgram(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.solve = dspy.Predict("question -> answer")

    def forward(self, question: str) -> Any:
        return self.solve(question=question)


class Program(Module):
    def __init__(self) -> None:
        super().__init__()
        self.solve = Predict("question -> answer")

    def forward(self, question: str) -> Any:
        return self.solve(question=question)


OPTIONS: dict[str, Any] = {"bsize": 3, "num_candidates": 2, "max_steps": 3, "num_threads": 1}


def dspy_run(
    metric: Any = exact, seed: int = 0, responder: Any = None, **options: Any
) -> tuple[Any, list[Any]]:
    log: list[Any] = []
    trainset = [dspy.Example(question=q, answer=a).with_inputs("question") for q, a in PAIRS]
    lm = DspyKeyedLM(responder or respond, log)
    with dspy.context(lm=lm, adapter=dspy.ChatAdapter()):
        optimizer = dspy.SIMBA(metric=metric, **{**OPTIONS, **options})
        program = optimizer.compile(DspyProgram(), trainset=trainset, seed=seed)
    return program, log


def dspyq_run(
    metric: Any = exact, seed: int = 0, responder: Any = None, **options: Any
) -> tuple[Any, list[Any]]:
    log: list[Any] = []
    trainset = [Example(question=q, answer=a).with_inputs("question") for q, a in PAIRS]
    with context(lm=KeyedLM(responder or respond, log)):
        optimizer = SIMBA(metric=metric, **{**OPTIONS, **options})
        program = optimizer.compile(Program(), trainset=trainset, seed=seed)
    return program, log


def shape(program: Any) -> list[Any]:
    return [
        (name, p.signature.instructions, [dict(d.items()) for d in p.demos])
        for name, p in program.named_predictors()
    ]


def assert_same(ours: Any, theirs: Any) -> None:
    assert shape(ours) == shape(theirs)
    assert ours.trial_logs == theirs.trial_logs
    assert [
        (c["score"], c["program"].simba_idx, shape(c["program"])) for c in ours.candidate_programs
    ] == [
        (c["score"], c["program"].simba_idx, shape(c["program"])) for c in theirs.candidate_programs
    ]


@pytest.mark.parametrize(
    ("seed", "options"),
    [
        (0, {}),
        (3, {}),
        (1, {"max_demos": 0}),
        (2, {"max_demos": 1, "max_steps": 4, "temperature_for_sampling": 0.5}),
        (5, {"num_candidates": 3, "demo_input_field_maxlen": 2}),
    ],
)
def test_simba_compiles_dspys_program(seed: int, options: dict[str, Any]) -> None:
    theirs, their_log = dspy_run(seed=seed, **options)
    ours, our_log = dspyq_run(seed=seed, **options)
    assert_same(ours, theirs)
    assert our_log == their_log


def test_simba_runs_both_strategies_and_improves() -> None:
    ours, log = dspyq_run(seed=0, max_steps=4)
    advice_calls = [entry for entry in log if "module_advice" in entry[0][0]]
    assert advice_calls, "no rule was asked for"
    assert {entry[1] for entry in log if "module_advice" not in entry[0][0]} >= {0, 1}
    scores = [c["score"] for c in ours.candidate_programs]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] > scores[-1] or len(scores) == 1


def test_simba_metric_returning_a_prediction_shows_its_fields() -> None:
    def dspy_metric(example: Any, prediction: Any, trace: Any = None) -> Any:
        return dspy.Prediction(score=exact(example, prediction), note="checked")

    def metric(example: Any, prediction: Any, trace: Any = None) -> Any:
        return Prediction(score=exact(example, prediction), note="checked")

    theirs, their_log = dspy_run(metric=dspy_metric, seed=4, max_demos=0)
    ours, our_log = dspyq_run(metric=metric, seed=4, max_demos=0)
    assert_same(ours, theirs)
    assert our_log == their_log
    assert any('"note": "checked"' in " ".join(entry[0]) for entry in our_log)


def test_simba_keeps_its_constructor_parameters() -> None:
    lm = KeyedLM(respond, [])
    optimizer = SIMBA(metric=exact, prompt_model=lm, teacher_settings={"lm": lm}, bsize=5)
    params = optimizer.get_params()
    assert params["metric"] is exact and params["prompt_model"] is lm
    assert params["teacher_settings"] == {"lm": lm} and params["bsize"] == 5
    names = ["num_candidates", "max_steps", "max_demos", "demo_input_field_maxlen", "num_threads"]
    assert [params[n] for n in names] == [6, 8, 4, 100_000, None]
    assert [s.__name__ for s in optimizer.strategies] == ["append_a_demo_", "append_a_rule"]
    with context(lm=lm):
        assert SIMBA(metric=exact).prompt_model is lm


def test_simba_refuses_what_dspys_refuses() -> None:
    trainset = [Example(question=q, answer=a).with_inputs("question") for q, a in PAIRS]
    dspy_trainset = [dspy.Example(question=q, answer=a).with_inputs("question") for q, a in PAIRS]
    with pytest.raises(AssertionError, match="Trainset too small: 6 < 7") as ours:
        SIMBA(metric=exact, bsize=7).compile(Program(), trainset=trainset)
    with pytest.raises(AssertionError) as theirs:
        dspy.SIMBA(metric=exact, bsize=7).compile(DspyProgram(), trainset=dspy_trainset)
    assert str(ours.value) == str(theirs.value)
    with pytest.raises(TypeError) as ours_t:
        SIMBA(exact)  # type: ignore[misc]
    with pytest.raises(TypeError):
        dspy.SIMBA(exact)
    assert "positional" in str(ours_t.value)
    with pytest.raises(TypeError):
        SIMBA(metric=exact).compile(Program(), trainset=trainset, teacher=Program())  # type: ignore[call-arg]


def test_offer_feedback_prompt_is_dspys() -> None:
    from dspy.teleprompt.simba_utils import OfferFeedback as DspyOfferFeedback

    assert OfferFeedback.instructions == DspyOfferFeedback.instructions
    for name, field in DspyOfferFeedback.fields.items():
        assert OfferFeedback.fields[name].json_schema_extra == field.json_schema_extra
    assert list(OfferFeedback.fields) == list(DspyOfferFeedback.fields)


def test_recursive_mask_names_what_json_cannot_hold() -> None:
    from dspy.teleprompt.simba_utils import recursive_mask as dspy_mask

    value = {"a": [1, object(), ("x", {1, 2})], "b": {"c": 2.5}}
    assert recursive_mask(value) == dspy_mask(value)


def test_simba_with_a_teacher_lm_runs_it_first_as_dspy() -> None:
    """The teacher's LM is the first resampling model, its rollout id set in place."""
    their_log: list[Any] = []
    dspy_teacher = DspyKeyedLM(respond, their_log)
    trainset = [dspy.Example(question=q, answer=a).with_inputs("question") for q, a in PAIRS]
    with dspy.context(lm=DspyKeyedLM(respond, their_log), adapter=dspy.ChatAdapter()):
        optimizer = dspy.SIMBA(metric=exact, teacher_settings={"lm": dspy_teacher}, **OPTIONS)
        theirs = optimizer.compile(DspyProgram(), trainset=trainset, seed=6)
    our_log: list[Any] = []
    teacher = KeyedLM(respond, our_log)
    examples = [Example(question=q, answer=a).with_inputs("question") for q, a in PAIRS]
    with context(lm=KeyedLM(respond, our_log)):
        ours = SIMBA(metric=exact, teacher_settings={"lm": teacher}, **OPTIONS).compile(
            Program(), trainset=examples, seed=6
        )
    assert_same(ours, theirs)
    assert our_log == their_log
    assert teacher.kwargs["rollout_id"] == dspy_teacher.kwargs["rollout_id"] == 0
    assert any(entry[2] is None for entry in our_log)  # the teacher keeps its temperature


def test_simba_on_threads_compiles_the_same_program() -> None:
    theirs, their_log = dspy_run(seed=3, num_threads=None)
    ours, our_log = dspyq_run(seed=3, num_threads=None)
    assert_same(ours, theirs)
    assert sorted(map(str, our_log)) == sorted(map(str, their_log))


def test_simba_scores_a_failing_program_or_metric_zero_as_dspy() -> None:
    """A program that raises, or a metric that raises, scores 0.0 and the run goes on."""

    def picky(example: Any, prediction: Any, trace: Any = None) -> float:
        if example.question == "1+4":
            raise RuntimeError("metric cannot judge 1+4")
        return exact(example, prediction)

    def failing(messages: list[dict[str, Any]], kwargs: dict[str, Any], log: list[Any]) -> str:
        if "module_advice" not in str(messages[0]["content"]) and "0+9" in str(messages[-1]):
            raise RuntimeError("provider down")
        return respond(messages, kwargs, log)

    theirs, their_log = dspy_run(metric=picky, seed=7, responder=failing)
    ours, our_log = dspyq_run(metric=picky, seed=7, responder=failing)
    assert_same(ours, theirs)
    assert our_log == their_log

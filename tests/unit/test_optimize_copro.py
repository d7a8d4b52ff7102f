"""COPRO over real LMs: a task model that is right only under one instruction, and a
prompt model that proposes that instruction among others.

The fake LM server answers the unit-conversion questions correctly only when the system
prompt says "Think about units"; the proposal calls (recognised by the proposal
signatures' field names) return scripted candidates, one of them carrying the phrase.
So the optimizer must find it, and the program it returns must beat the original on
questions it never saw.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from dspyq.core.context import context
from dspyq.core.example import Example
from dspyq.core.module import Module
from dspyq.core.observe import capture
from dspyq.core.predict import Predict
from dspyq.core.signature import field_extra
from dspyq.errors import ConfigurationError
from dspyq.lm.lm import LM
from dspyq.metrics import answer_exact_match
from dspyq.optimize.copro import COPRO, InstructionCandidate, apply_instructions
from dspyq.optimize.evaluate import Evaluate
from dspyq.settings import reload_settings
from dspyq.testing import FakeLMServer

MAGIC = "Think about units"
ORIGINAL = "Answer the question."

TRAIN = [
    ("How many metres are in 3 km?", "3000"),
    ("How many grams are in 2 kg?", "2000"),
    ("How many minutes are in 2 hours?", "120"),
    ("How many centimetres are in 4 m?", "400"),
]
HELD_OUT = [
    ("How many seconds are in 5 minutes?", "300"),
    ("How many millilitres are in 3 litres?", "3000"),
    ("How many metres are in 7 km?", "7000"),
]


def chat_reply(**fields: str) -> str:
    """A completion in the chat adapter's format."""
    body = "".join(f"[[ ## {name} ## ]]\n{value}\n\n" for name, value in fields.items())
    return body + "[[ ## completed ## ]]"


def proposal(instruction: str, prefix: str = "Answer:") -> str:
    return chat_reply(proposed_instruction=instruction, proposed_prefix_for_output_field=prefix)


def examples(pairs: list[tuple[str, str]]) -> list[Example]:
    return [Example(question=q, answer=a).with_inputs("question") for q, a in pairs]


def script_task(server: FakeLMServer) -> None:
    """Right answers only under the magic instruction; the question must be the one asked
    (the main request ends with "Respond with ..."), not a demo."""
    for question, answer in TRAIN + HELD_OUT:
        server.answer_fields(
            {"answer": answer},
            match=(
                rf"{MAGIC}.*\[\[ ## question ## \]\]\n{re.escape(question)}\n\n"
                r"(?:(?!\[\[ ## question ## \]\]).)*Respond with"
            ),
        )
    server.answer_fields({"answer": "I am not sure"}, match=r"\[\[ ## question ## \]\]")


@pytest.fixture
def lm(fake_lm: FakeLMServer) -> LM:
    return LM("openai/fake-model", api_base=fake_lm.openai_base, api_key="test", cache=False)


@pytest.fixture
def scripted(fake_lm: FakeLMServer) -> FakeLMServer:
    fake_lm.add_rule(
        r"\[\[ ## basic_instruction ## \]\]",
        answers=[
            proposal("Answer in one word."),
            proposal(f'"{MAGIC}, then give only the number."', "Number:"),
            proposal("Be very careful."),
        ],
    )
    fake_lm.add_rule(
        r"\[\[ ## attempted_instructions ## \]\]",
        answers=[proposal(f"Round two idea {i}.") for i in range(1, 5)],
    )
    script_task(fake_lm)
    return fake_lm


def requests_for(server: FakeLMServer, field: str) -> list[dict[str, Any]]:
    return [r["body"] for r in server.requests if f"[[ ## {field} ## ]]" in json.dumps(r["body"])]


def user_text(body: dict[str, Any]) -> str:
    return str(body["messages"][-1]["content"])


def test_copro_finds_the_instruction_that_makes_the_task_model_right(
    scripted: FakeLMServer, lm: LM
) -> None:
    student = Predict("question -> answer")
    student.signature = student.signature.with_instructions(ORIGINAL)
    optimizer = COPRO(metric=answer_exact_match, breadth=4, depth=2, init_temperature=1.1)

    with context(lm=lm):
        best = optimizer.compile(student, trainset=examples(TRAIN), eval_kwargs={"num_threads": 2})
        held_out = Evaluate(devset=examples(HELD_OUT), metric=answer_exact_match)
        baseline_score = held_out(student).score
        optimized_score = held_out(best).score

    (predictor,) = best.predictors()
    assert predictor.signature.instructions == f"{MAGIC}, then give only the number."
    assert field_extra(predictor.signature.output_fields["answer"])["prefix"] == "Number:"
    assert baseline_score == 0.0
    assert optimized_score == 100.0
    # The student is left as it was.
    assert student.signature.instructions == ORIGINAL


def test_copro_asks_for_breadth_proposals_then_depth_minus_one_rounds_of_attempts(
    scripted: FakeLMServer, lm: LM
) -> None:
    optimizer = COPRO(metric=answer_exact_match, breadth=4, depth=3, init_temperature=1.1)

    with context(lm=lm), capture() as events:
        best: Any = optimizer.compile(
            Predict("question -> answer"), trainset=examples(TRAIN), eval_kwargs={}
        )

    (first,) = requests_for(scripted, "basic_instruction")
    assert first["n"] == 3 and first["temperature"] == 1.1
    rounds = requests_for(scripted, "attempted_instructions")
    assert [body["n"] for body in rounds] == [4, 4]
    assert all(body["temperature"] == 1.1 for body in rounds)
    # Every candidate of every round is scored: breadth at each depth (one predictor).
    assert best.total_calls == 4 * 3
    iterations = [e.data for e in events if e.event_type == "optimization_iteration"]
    assert [d["iteration"] for d in iterations] == list(range(1, 13))
    assert [d["depth"] for d in iterations] == [0] * 4 + [1] * 4 + [2] * 4
    assert iterations[-1]["best_score"] == 100.0
    # The attempts are listed worst first, so the best (the magic one) comes last.
    attempts = user_text(rounds[0])
    listed = re.findall(r"\[(\d+)\] «(.*?)»", attempts)
    assert [int(number) for number, _ in listed] == list(range(1, 13))
    assert [text for _, text in listed][-3:] == [
        f"Instruction #4: {MAGIC}, then give only the number.",
        "Prefix #4: Number:",
        "Resulting Score #4: 100.0",
    ]
    assert [text for _, text in listed][:3] == [
        "Instruction #1: Given the fields `question`, produce the fields `answer`.",
        "Prefix #1: Answer:",
        "Resulting Score #1: 0.0",
    ]


def test_copro_keeps_candidate_programs_and_stats_like_dspy(scripted: FakeLMServer, lm: LM) -> None:
    optimizer = COPRO(metric=answer_exact_match, breadth=4, depth=2, track_stats=True)

    with context(lm=lm):
        best: Any = optimizer.compile(
            Predict("question -> answer"), trainset=examples(TRAIN), eval_kwargs={}
        )

    scores = [c["score"] for c in best.candidate_programs]
    assert scores == sorted(scores, reverse=True)
    assert best.candidate_programs[0]["program"] is best
    # The candidates hang off the program without becoming parameters of it.
    assert [name for name, _ in best.named_parameters()] == ["self"]
    assert best.candidate_programs[0]["instruction"].startswith(MAGIC)
    assert best.candidate_programs[0]["depth"] == 0
    # Distinct candidates that tie on 0.0 are all kept; there are 4 + 4 of them.
    assert len(best.candidate_programs) == 8

    latest = best.results_latest["self"]
    assert latest["depth"] == [0, 1]
    assert latest["max"] == [100.0, 0.0]
    assert latest["min"] == [0.0, 0.0]
    assert latest["average"] == [25.0, 0.0]
    assert latest["std"][0] == pytest.approx(43.30127, rel=1e-5)
    best_stats = best.results_best["self"]
    assert best_stats["depth"] == [0, 1]
    assert best_stats["max"] == [100.0, 100.0]
    assert best_stats["average"] == [25.0, 12.5]


def test_copro_without_stats_attaches_no_results(scripted: FakeLMServer, lm: LM) -> None:
    with context(lm=lm):
        best: Any = COPRO(metric=answer_exact_match, breadth=2, depth=1).compile(
            Predict("question -> answer"), trainset=examples(TRAIN[:2]), eval_kwargs={}
        )

    assert best.total_calls == 2
    assert not hasattr(best, "results_best")
    assert not hasattr(best, "results_latest")


def test_copro_uses_the_prompt_model_for_proposals_only(scripted: FakeLMServer, lm: LM) -> None:
    prompt_model = LM(
        "openai/prompt-model", api_base=scripted.openai_base, api_key="test", cache=False
    )
    optimizer = COPRO(prompt_model=prompt_model, metric=answer_exact_match, breadth=4, depth=2)

    with context(lm=lm):
        optimizer.compile(Predict("question -> answer"), trainset=examples(TRAIN), eval_kwargs={})

    by_model: dict[str, set[str]] = {}
    for request in scripted.requests:
        body = request["body"]
        kind = "proposal" if "proposed_instruction" in json.dumps(body) else "task"
        by_model.setdefault(body["model"], set()).add(kind)
    assert by_model == {"prompt-model": {"proposal"}, "fake-model": {"task"}}


class TwoSteps(Module):
    """Rewrite the question, then answer it: two predictors for COPRO to tune in turn."""

    def __init__(self) -> None:
        super().__init__()
        self.rewrite = Predict("question -> rewritten")
        self.answer = Predict("question, rewritten -> answer")

    def forward(self, question: str) -> Any:
        rewritten = self.rewrite(question=question).rewritten
        return self.answer(question=question, rewritten=rewritten)


def test_copro_tunes_each_predictor_of_a_multi_step_program(fake_lm: FakeLMServer, lm: LM) -> None:
    fake_lm.add_rule(
        r"\[\[ ## basic_instruction ## \]\]",
        answers=[proposal(f"{MAGIC}.", "Out:"), proposal("Be brief.", "Out:")],
    )
    fake_lm.answer_fields(
        {"rewritten": "same"}, match=r"starting with the field `\[\[ ## rewritten ## \]\]`"
    )
    script_task(fake_lm)
    optimizer = COPRO(metric=answer_exact_match, breadth=3, depth=1)

    with context(lm=lm):
        best: Any = optimizer.compile(TwoSteps(), trainset=examples(TRAIN[:2]), eval_kwargs={})

    instructions = {name: p.signature.instructions for name, p in best.named_predictors()}
    assert instructions["answer"] == f"{MAGIC}."
    # Both predictors had breadth candidates scored.
    assert best.total_calls == 3 + 3
    assert {c["predictor"] for c in best.candidate_programs} == {"rewrite", "answer"}


def test_apply_instructions_sets_instruction_and_last_output_prefix() -> None:
    program = Predict("question -> reasoning, answer")

    updated = apply_instructions(
        program, {"self": InstructionCandidate(instruction="Be exact.", prefix="Final:")}
    )

    (predictor,) = updated.predictors()
    assert predictor.signature.instructions == "Be exact."
    assert field_extra(predictor.signature.output_fields["answer"])["prefix"] == "Final:"
    assert field_extra(predictor.signature.output_fields["reasoning"])["prefix"] == ("Reasoning:")
    assert program.signature.instructions != "Be exact."


@pytest.fixture
def breadth_from_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DSPYQ_OPTIMIZATION__COPRO__BREADTH", "3")
    reload_settings()
    yield
    monkeypatch.undo()
    reload_settings()


def test_copro_defaults_come_from_the_settings(
    breadth_from_environment: None, scripted: FakeLMServer, lm: LM
) -> None:
    optimizer = COPRO(metric=answer_exact_match, depth=1)

    assert (optimizer.breadth, optimizer.depth, optimizer.init_temperature) == (3, 1, 1.4)
    with context(lm=lm):
        optimizer.compile(Predict("question -> answer"), trainset=examples(TRAIN), eval_kwargs={})
    (first,) = requests_for(scripted, "basic_instruction")
    assert first["n"] == 2 and first["temperature"] == 1.4


def test_copro_defaults_without_settings_are_dspys() -> None:
    optimizer = COPRO(metric=answer_exact_match)

    assert (optimizer.breadth, optimizer.depth, optimizer.init_temperature) == (10, 3, 1.4)


@pytest.mark.parametrize("breadth", [0, 1])
def test_copro_refuses_a_breadth_of_one_or_less(breadth: int) -> None:
    with pytest.raises(ConfigurationError, match="Breadth must be greater than 1"):
        COPRO(metric=answer_exact_match, breadth=breadth)

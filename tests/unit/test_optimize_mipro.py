"""MIPROv2 over real LMs against the fake LM server.

The task model answers the unit-conversion questions correctly only when the system
prompt carries "Think about units" (and, in the few-shot world, only when the prompt also
shows a demo); the grounded proposer's requests (recognised by the
``proposed_instruction`` field) get scripted instructions, one of them the magic one.
The dataset summary and program descriptions get the server's default answers. So
MIPROv2 must find the right (instruction, demo set) combination, and what it returns
must beat the original program on held-out questions.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from dspyq.core.context import context
from dspyq.core.example import Example
from dspyq.core.observe import capture
from dspyq.core.predict import Predict
from dspyq.errors import ConfigurationError
from dspyq.lm.lm import LM
from dspyq.metrics import answer_exact_match
from dspyq.optimize.evaluate import Evaluate
from dspyq.optimize.mipro import MIPROv2
from dspyq.testing import FakeLMServer

MAGIC = "Think about units"
ORIGINAL = "Answer the question."
PROPOSALS = ["Answer with care.", "Be concise.", f"{MAGIC} before you answer."]

QUESTIONS = [
    ("How many metres are in 3 km?", "3000"),
    ("How many grams are in 2 kg?", "2000"),
    ("How many minutes are in 2 hours?", "120"),
    ("How many centimetres are in 4 m?", "400"),
    ("How many seconds are in 2 minutes?", "120"),
    ("How many millimetres are in 5 cm?", "50"),
    ("How many hours are in 3 days?", "72"),
    ("How many grams are in 5 kg?", "5000"),
]
HELD_OUT = [
    ("How many seconds are in 5 minutes?", "300"),
    ("How many millilitres are in 3 litres?", "3000"),
    ("How many metres are in 7 km?", "7000"),
]
# A demo in the prompt: an assistant turn with a real answer (the system message's
# template shows "{answer}" instead).
DEMO_SHOWN = r"\[\[ ## answer ## \]\]\n(?!\{answer\})[^\n]+\n\n\[\[ ## completed ## \]\].*"


def chat_reply(**fields: str) -> str:
    body = "".join(f"[[ ## {name} ## ]]\n{value}\n\n" for name, value in fields.items())
    return body + "[[ ## completed ## ]]"


def examples(pairs: list[tuple[str, str]]) -> list[Example]:
    return [Example(question=q, answer=a).with_inputs("question") for q, a in pairs]


def script(server: FakeLMServer, *, needs_demo: bool) -> None:
    server.add_rule(
        r"\[\[ ## proposed_instruction ## \]\]",
        answers=[chat_reply(proposed_instruction=text) for text in PROPOSALS],
    )
    demo = DEMO_SHOWN if needs_demo else ""
    for question, answer in QUESTIONS + HELD_OUT:
        server.answer_fields(
            {"answer": answer},
            match=(
                rf"{MAGIC}.*{demo}\[\[ ## question ## \]\]\n{re.escape(question)}\n\n"
                "Respond with"
            ),
        )
    server.answer_fields({"answer": "I am not sure"}, match=r"\[\[ ## question ## \]\]")


@pytest.fixture
def lm(fake_lm: FakeLMServer) -> LM:
    return LM("openai/fake-model", api_base=fake_lm.openai_base, api_key="test", cache=False)


def student() -> Predict:
    program = Predict("question -> answer")
    program.signature = program.signature.with_instructions(ORIGINAL)
    return program


def compile_few_shot(lm: LM, seed: int = 9) -> Any:
    with context(lm=lm):
        optimizer = MIPROv2(
            metric=answer_exact_match,
            auto=None,
            num_candidates=3,
            max_bootstrapped_demos=1,
            max_labeled_demos=1,
            seed=seed,
        )
        return optimizer.compile(
            student(),
            trainset=examples(QUESTIONS[:4]),
            valset=examples(QUESTIONS[4:]),
            num_trials=10,
            minibatch_size=2,
            minibatch_full_eval_steps=3,
        )


def test_mipro_finds_the_instruction_and_demo_set_that_work_together(
    fake_lm: FakeLMServer, lm: LM
) -> None:
    script(fake_lm, needs_demo=True)

    best = compile_few_shot(lm)
    with context(lm=lm):
        held_out = Evaluate(devset=examples(HELD_OUT), metric=answer_exact_match)
        baseline, optimized = held_out(student()).score, held_out(best).score

    (predictor,) = best.predictors()
    assert predictor.signature.instructions == PROPOSALS[2]
    assert len(predictor.demos) == 1
    assert best.best_params["0_predictor_instruction"] == 2
    assert best.best_params["0_predictor_demos"] != 0  # set 0 is the zero-shot one
    assert best.score == 100.0
    assert (baseline, optimized) == (0.0, 100.0)


def test_mipro_records_trials_and_candidate_programs(fake_lm: FakeLMServer, lm: LM) -> None:
    script(fake_lm, needs_demo=True)

    with capture() as events:
        best = compile_few_shot(lm)

    full = best.candidate_programs
    minibatches = best.mb_candidate_programs
    assert [c["score"] for c in full] == sorted((c["score"] for c in full), reverse=True)
    assert full[0]["score"] == 100.0 and full[0]["full_eval"]
    assert len(minibatches) == 10 and not any(c["full_eval"] for c in minibatches)
    # The default program is trial 1, fully scored; trials 2.. are minibatches, with a
    # full evaluation after every third one and one before the end.
    assert best.trial_logs[1]["full_eval_params"] == {
        "0_predictor_instruction": 0,
        "0_predictor_demos": 0,
    }
    assert len(best.trial_logs[2]["mb_example_indices"]) == 2
    full_numbers = [n for n, log in best.trial_logs.items() if "full_eval_score" in log]
    assert full_numbers[0] == 1 and len(full_numbers) == len(full)
    iterations = [e.data for e in events if e.event_type == "optimization_iteration"]
    assert len(iterations) == len(best.trial_logs)
    assert iterations[-1]["best_score"] == 100.0
    # Candidate programs hang off the best program without becoming its parameters.
    assert [name for name, _ in best.named_parameters()] == ["self"]
    # Example evaluations: the valset (4) per full evaluation, the minibatch (2) per trial.
    assert best.total_calls == 4 * len(full) + 2 * 10


def test_mipro_is_deterministic_for_a_seed(fake_lm: FakeLMServer, lm: LM) -> None:
    script(fake_lm, needs_demo=True)

    first = compile_few_shot(lm, seed=11)
    second = compile_few_shot(lm, seed=11)

    assert first.trial_logs == second.trial_logs
    assert first.best_params == second.best_params


def test_mipro_zero_shot_searches_instructions_only(fake_lm: FakeLMServer, lm: LM) -> None:
    script(fake_lm, needs_demo=False)

    with context(lm=lm):
        optimizer = MIPROv2(
            metric=answer_exact_match,
            auto=None,
            num_candidates=3,
            max_bootstrapped_demos=0,
            max_labeled_demos=0,
        )
        best = optimizer.compile(
            student(), trainset=examples(QUESTIONS), num_trials=6, minibatch=False
        )

    (predictor,) = best.predictors()
    assert predictor.signature.instructions == PROPOSALS[2]
    assert predictor.demos == []
    assert set(best.best_params) == {"0_predictor_instruction"}
    # No minibatches: every trial is a full evaluation on the valset (80% of the trainset).
    assert best.mb_candidate_programs == []
    assert len(best.candidate_programs) == 1 + 6


def test_mipro_proposes_with_the_prompt_model_at_its_temperature(
    fake_lm: FakeLMServer, lm: LM
) -> None:
    script(fake_lm, needs_demo=True)
    prompt_model = LM(
        "openai/prompt-model", api_base=fake_lm.openai_base, api_key="test", cache=False
    )

    with context(lm=lm):
        optimizer = MIPROv2(
            metric=answer_exact_match,
            prompt_model=prompt_model,
            auto=None,
            num_candidates=3,
            max_bootstrapped_demos=0,
            max_labeled_demos=0,
            init_temperature=0.7,
        )
        optimizer.compile(
            student(),
            trainset=examples(QUESTIONS),
            num_trials=2,
            minibatch=False,
            data_aware_proposer=False,
            program_aware_proposer=False,
        )

    bodies = [r["body"] for r in fake_lm.requests]
    proposals = [b for b in bodies if "proposed_instruction" in json.dumps(b)]
    # One request per instruction candidate (candidate 0 is then the original).
    assert len(proposals) == 3
    assert {b["model"] for b in proposals} == {"prompt-model"}
    assert {b["temperature"] for b in proposals} == {0.7}
    assert all(b["model"] == "fake-model" for b in bodies if b not in proposals)
    first = proposals[0]["messages"][-1]["content"]
    assert f"[[ ## basic_instruction ## ]]\n{ORIGINAL}" in first
    assert "dataset_description" not in json.dumps(proposals[0])


def test_mipro_auto_light_sets_candidates_and_trials(fake_lm: FakeLMServer, lm: LM) -> None:
    script(fake_lm, needs_demo=False)

    with context(lm=lm):
        optimizer = MIPROv2(
            metric=answer_exact_match, max_bootstrapped_demos=0, max_labeled_demos=0
        )
        best = optimizer.compile(student(), trainset=examples(QUESTIONS))

    # light: 6 candidates, all of them instructions when zero-shot; trials
    # max(2 * 1 * log2(6), 1.5 * 6) = 9; the valset (80% of 8) is too small for minibatches.
    assert (optimizer.num_fewshot_candidates, optimizer.num_instruct_candidates) == (6, 6)
    assert len(best.candidate_programs) == 1 + 9
    assert best.predictors()[0].signature.instructions.startswith(MAGIC)


@pytest.mark.parametrize(
    ("options", "trials", "message"),
    [
        ({"auto": None, "num_candidates": 3}, None, "num_trials must also be provided"),
        ({"auto": None}, 5, "num_candidates must also be provided"),
        ({"auto": "light", "num_candidates": 3}, None, "cannot be set"),
        ({"auto": "light"}, 5, "cannot be set"),
    ],
)
def test_mipro_checks_its_run_mode(
    lm: LM, options: dict[str, Any], trials: int | None, message: str
) -> None:
    with context(lm=lm):
        optimizer = MIPROv2(metric=answer_exact_match, **options)
        with pytest.raises(ConfigurationError, match=message):
            optimizer.compile(student(), trainset=examples(QUESTIONS), num_trials=trials)


def test_mipro_needs_an_lm() -> None:
    with context(lm=None), pytest.raises(ConfigurationError, match="prompt_model and task_model"):
        MIPROv2(metric=answer_exact_match)


def test_mipro_refuses_a_minibatch_larger_than_the_valset(lm: LM) -> None:
    with context(lm=lm):
        optimizer = MIPROv2(metric=answer_exact_match, auto=None, num_candidates=2)
        with pytest.raises(ConfigurationError, match="Minibatch size cannot exceed"):
            optimizer.compile(student(), trainset=examples(QUESTIONS), num_trials=2)

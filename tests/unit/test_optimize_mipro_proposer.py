"""The grounded proposer (MIPROv2's step 2) and the search's building blocks, on their own.

Proposals go to the fake LM server; what is asserted is what the prompt model is asked
(DSPy's instructions, the demos it is shown, the tip) and how its answers are cleaned.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from dspyq.core.context import context
from dspyq.core.example import Example, Prediction
from dspyq.core.module import Module
from dspyq.core.predict import Predict
from dspyq.lm.lm import LM
from dspyq.metrics import answer_exact_match
from dspyq.optimize.evaluate import Evaluate
from dspyq.optimize.grounded_proposer import (
    TIPS,
    GroundedProposer,
    instruction_signature,
    strip_prefix,
)
from dspyq.optimize.mipro_search import PromptSearch, create_minibatch, program_for
from dspyq.testing import FakeLMServer


@pytest.fixture
def lm(fake_lm: FakeLMServer) -> LM:
    return LM("openai/fake-model", api_base=fake_lm.openai_base, api_key="test", cache=False)


def proposal_requests(server: FakeLMServer) -> list[dict[str, Any]]:
    return [
        r["body"]
        for r in server.requests
        if "[[ ## proposed_instruction ## ]]" in json.dumps(r["body"])
    ]


@pytest.mark.parametrize(
    ("answer", "cleaned"),
    [
        ("Proposed Instruction: Add the numbers.", "Add the numbers."),
        ('**  Instruction:   "Add the numbers."', "Add the numbers."),
        ('"Add the numbers."', "Add the numbers."),
        ("Add the numbers: all of them.", "all of them."),
        ("Please add all of the numbers: then stop.", "Please add all of the numbers: then stop."),
    ],
)
def test_strip_prefix_drops_a_short_leading_label_and_quotes(answer: str, cleaned: str) -> None:
    assert strip_prefix(answer) == cleaned


def test_the_instruction_request_keeps_dspys_fields_in_order() -> None:
    full = instruction_signature()
    bare = instruction_signature(
        use_dataset_summary=False, program_aware=False, use_instruct_history=False, use_tip=False
    )

    assert list(full.input_fields) == [
        "dataset_description",
        "program_code",
        "program_description",
        "module",
        "module_description",
        "task_demos",
        "previous_instructions",
        "basic_instruction",
        "tip",
    ]
    assert list(bare.fields) == ["task_demos", "basic_instruction", "proposed_instruction"]
    assert full.instructions.startswith("Use the information below to learn about a task")


def demo_sets() -> dict[int, list[list[Any]]]:
    augmented = [Example(augmented=True, question=f"q{i}", answer=f"a{i}") for i in range(5)]
    labelled = Example(question="plain", answer="labelled")
    return {0: [[], [augmented[0], labelled], [augmented[1], augmented[2]], augmented[3:]]}


def test_proposals_show_bootstrapped_demos_from_their_set_on_and_never_for_set_zero(
    fake_lm: FakeLMServer, lm: LM
) -> None:
    fake_lm.answer_fields({"proposed_instruction": "PROPOSED INSTRUCTION: Be exact."})
    program = Predict("question -> answer")
    proposer = GroundedProposer(
        prompt_model=lm,
        program=program,
        trainset=[],
        use_dataset_summary=False,
        program_aware=False,
        rng=random.Random(0),
    )

    proposed = proposer.propose_instructions_for_program(
        trainset=[], program=program, demo_candidates=demo_sets(), N=3
    )

    assert proposed == {0: ["Be exact.", "Be exact.", "Be exact."]}
    shown = [body["messages"][-1]["content"] for body in proposal_requests(fake_lm)]
    assert "[[ ## task_demos ## ]]\nNo task demos provided." in shown[0]
    # Set 1 first (its labelled demo skipped), then sets 2 and 3: three demos at most.
    assert (
        "Question: q0\nAnswer: a0\n\nQuestion: q1\nAnswer: a1\n\nQuestion: q2\nAnswer: a2"
        in (shown[1])
    )
    assert "plain" not in shown[1] and "q3" not in shown[1]
    assert "Question: q1\nAnswer: a1\n\nQuestion: q2\nAnswer: a2\n\nQuestion: q3" in shown[2]
    assert proposer.calls == 3


def test_tips_are_drawn_from_the_seeded_rng(fake_lm: FakeLMServer, lm: LM) -> None:
    fake_lm.answer_fields({"proposed_instruction": "Be exact."})
    program = Predict("question -> answer")
    proposer = GroundedProposer(
        prompt_model=lm,
        program=program,
        trainset=[],
        use_dataset_summary=False,
        program_aware=False,
        rng=random.Random(5),
    )

    proposer.propose_instructions_for_program(
        trainset=[], program=program, demo_candidates=None, N=4
    )

    expected = random.Random(5)
    tips = []
    for _ in range(4):
        tips.append(TIPS[expected.choice(list(TIPS))])
        expected.randint(0, 10**9)  # the rollout id drawn for each proposal
    for body, tip in zip(proposal_requests(fake_lm), tips, strict=True):
        text = body["messages"][-1]["content"]
        assert (f"[[ ## tip ## ]]\n{tip}" in text) if tip else ("[[ ## tip ## ]]" not in text)


def test_a_data_and_program_aware_proposer_summarises_and_describes_first(
    fake_lm: FakeLMServer, lm: LM
) -> None:
    fake_lm.answer_fields({"summary": "Unit conversions."}, match=r"\[\[ ## summary ## \]\]")
    fake_lm.answer_fields(
        {"program_description": "Converts units."},
        match=r"starting with the field `\[\[ ## program_description ## \]\]`",
    )
    fake_lm.answer_fields(
        {"proposed_instruction": "Convert carefully."},
        match=r"starting with the field `\[\[ ## proposed_instruction ## \]\]`",
    )
    program = Predict("question -> answer")
    trainset = [Example(question="3 km in m?", answer="3000").with_inputs("question")]

    with context(lm=lm):
        proposer = GroundedProposer(prompt_model=None, program=program, trainset=trainset)
        proposed = proposer.propose_instructions_for_program(
            trainset=trainset, program=program, demo_candidates=None, N=1
        )

    assert proposer.data_summary == "Unit conversions."
    assert proposed == {0: ["Convert carefully."]}
    (request,) = proposal_requests(fake_lm)
    text = request["messages"][-1]["content"]
    assert "[[ ## dataset_description ## ]]\nUnit conversions." in text
    assert "[[ ## program_description ## ]]\nConverts units." in text
    assert "[[ ## module ## ]]\nPredict(question) -> answer" in text


class InstructionReader(Module):
    """Answers right exactly when its instruction says so, without an LM: the search's
    mechanics on a real program, with known scores."""

    def __init__(self) -> None:
        super().__init__()
        self.predict = Predict("question -> answer")

    def forward(self, question: str) -> Prediction:
        right = "right" in self.predict.signature.instructions
        return Prediction(answer=question if right else "no")


def test_the_search_scores_the_default_first_then_finds_the_best_instruction() -> None:
    valset = [Example(question=str(i), answer=str(i)).with_inputs("question") for i in range(4)]
    instructions = {0: ["original", "wrong", "be right", "also wrong"]}
    search = PromptSearch(
        InstructionReader(),
        instructions,
        None,
        Evaluate(devset=valset, metric=answer_exact_match),
        valset,
        seed=3,
        rng=random.Random(3),
    )

    best = search.run(num_trials=12, minibatch=True, minibatch_size=2, minibatch_full_eval_steps=3)

    assert best == {"0_predictor_instruction": 2}
    assert search.best_score == 100.0
    first = search.results[0]
    assert (first.number, first.params, first.full_eval) == (
        1,
        {"0_predictor_instruction": 0},
        True,
    )
    full = [r.number for r in search.results if r.full_eval]
    # After trials numbered 4, 8, 12 ... (every third minibatch), and before the end.
    assert full[:3] == [1, 5, 9]
    assert search.trial_logs[5]["full_eval_score"] in (0.0, 100.0)
    assert program_for(
        InstructionReader(), best, instructions, None
    ).predict.signature.instructions == ("be right")


def test_minibatches_are_drawn_without_replacement_from_the_rng() -> None:
    items = [Example(n=i) for i in range(10)]

    batch = create_minibatch(items, 4, random.Random(1))

    assert len({example.n for example in batch}) == 4
    assert batch == create_minibatch(items, 4, random.Random(1))
    assert len(create_minibatch(items, 50, random.Random(1))) == 10

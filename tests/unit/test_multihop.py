"""MultiHopQA: decompose, answer each hop, synthesize; each step usable on its own."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from dspyq.core.context import context
from dspyq.core.example import Prediction
from dspyq.core.multihop import MultiHopQA
from dspyq.lm import LM
from dspyq.testing.fake_lm import FakeLMServer

QUESTION = "Did the same person direct Jaws and E.T.?"
SUB_QUESTIONS = ["Who directed Jaws?", "Who directed E.T.?"]


@pytest.fixture
def lm(fake_lm: FakeLMServer) -> LM:
    return LM("openai/gpt-4o-mini", api_base=fake_lm.openai_base, api_key="test", cache=False)


def script(server: FakeLMServer, sub_questions: list[str]) -> None:
    server.answer_fields(
        {"reasoning": "Two directors to find.", "sub_questions": sub_questions},
        match="Break the complex question",
    )
    # The synthesis prompt also mentions the sub-questions, so its rule comes first.
    server.answer_fields(
        {"reasoning": "Both answers agree.", "answer": "Yes, Steven Spielberg."},
        match="using the answers found",
    )
    server.answer_fields(
        {"reasoning": "Known.", "answer": "Steven Spielberg"}, match="Who directed"
    )


def test_forward_decomposes_answers_each_hop_and_synthesizes(fake_lm, lm):
    script(fake_lm, SUB_QUESTIONS)
    with context(lm=lm):
        prediction = MultiHopQA()(question=QUESTION)

    assert prediction.answer == "Yes, Steven Spielberg."
    assert prediction.reasoning == "Both answers agree."
    assert prediction.sub_questions == SUB_QUESTIONS
    assert prediction.sub_answers == ["Steven Spielberg", "Steven Spielberg"]
    bodies = [entry["body"] for entry in fake_lm.requests]
    assert len(bodies) == 4
    assert bodies[1]["messages"][-1]["content"].startswith(
        "[[ ## question ## ]]\nWho directed Jaws?"
    )
    synthesis = bodies[3]["messages"][-1]["content"]
    assert f"[[ ## sub_questions ## ]]\n{json.dumps(SUB_QUESTIONS)}" in synthesis
    assert '[[ ## sub_answers ## ]]\n["Steven Spielberg", "Steven Spielberg"]' in synthesis


def test_max_hops_caps_the_sub_questions(fake_lm, lm):
    script(fake_lm, [*SUB_QUESTIONS, "Who directed Hook?", "Who directed Duel?"])
    with context(lm=lm):
        prediction = MultiHopQA(max_hops=2)(question=QUESTION)
    assert prediction.sub_questions == SUB_QUESTIONS
    assert len(fake_lm.requests) == 1 + 2 + 1


def test_an_empty_decomposition_answers_the_question_itself(fake_lm, lm):
    script(fake_lm, ["", "  "])
    with context(lm=lm):
        assert MultiHopQA().decompose("Who directed Jaws?") == ["Who directed Jaws?"]


def test_steps_run_separately_as_the_distributed_chain_does(fake_lm, lm):
    script(fake_lm, SUB_QUESTIONS)
    program = MultiHopQA()
    with context(lm=lm):
        sub_questions = program.decompose(QUESTION)
        hops = [program.answer_hop(q) for q in sub_questions]
        final = program.synthesize(QUESTION, sub_questions, [hop.answer for hop in hops])
    assert sub_questions == SUB_QUESTIONS
    assert all(isinstance(hop, Prediction) and hop.reasoning == "Known." for hop in hops)
    assert json.loads(json.dumps(final.toDict())) == {
        "reasoning": "Both answers agree.",
        "answer": "Yes, Steven Spielberg.",
    }


def test_async_forward_gives_the_same_result(fake_lm, lm):
    script(fake_lm, SUB_QUESTIONS)

    async def run() -> Prediction:
        with context(lm=lm):
            return await MultiHopQA().acall(question=QUESTION)

    prediction = asyncio.run(run())
    assert prediction.sub_answers == ["Steven Spielberg", "Steven Spielberg"]
    assert prediction.answer == "Yes, Steven Spielberg."


def test_predictors_are_named_and_saved_like_any_program(tmp_path: Path):
    program = MultiHopQA()
    assert [name for name, _ in program.named_predictors()] == [
        "decomposer.predict",
        "hop_answerer.predict",
        "synthesizer.predict",
    ]
    program.save(tmp_path / "multihop.json")
    reloaded = MultiHopQA()
    reloaded.load(tmp_path / "multihop.json")
    assert reloaded.dump_state() == program.dump_state()


def test_max_hops_must_be_positive():
    with pytest.raises(ValueError):
        MultiHopQA(max_hops=0)

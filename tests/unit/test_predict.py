"""Predict and ChainOfThought against a real LM talking to the fake LM server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from dspyq.adapters import ChatAdapter, JSONAdapter
from dspyq.core.chain_of_thought import ChainOfThought
from dspyq.core.context import context, current
from dspyq.core.example import Example, Prediction
from dspyq.core.predict import Predict
from dspyq.core.signature import InputField, OutputField, Signature
from dspyq.errors import ConfigurationError, InputError
from dspyq.lm import LM
from dspyq.testing.fake_lm import FakeLMServer

FIXTURES = (
    Path(__file__).resolve().parents[3] / "shared" / "reference" / "dspy-3.4.1-adapter-fixtures"
)
needs_fixtures = pytest.mark.skipif(
    not FIXTURES.exists(), reason="DSPy reference fixtures not present"
)


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture
def lm(fake_lm: FakeLMServer) -> LM:
    return LM("openai/gpt-4o-mini", api_base=fake_lm.openai_base, api_key="test", cache=False)


def sent_messages(server: FakeLMServer) -> list[dict[str, Any]]:
    request = server.last_request
    assert request is not None
    return request["body"]["messages"]


@needs_fixtures
def test_predict_sends_dspys_prompt_and_returns_the_parsed_prediction(fake_lm, lm):
    case = fixture("01_string_basic.json")
    fake_lm.answer(case["parses"][0]["completion"])
    with context(lm=lm):
        prediction = Predict("question -> answer")(**case["inputs"])
    assert sent_messages(fake_lm) == case["messages"]
    assert isinstance(prediction, Prediction)
    assert prediction.answer == "Paris"
    assert prediction.completions is not None and len(prediction.completions) == 1


@needs_fixtures
def test_chain_of_thought_extends_the_signature_like_dspy(fake_lm, lm):
    case = fixture("09_cot_basic.json")
    cot = ChainOfThought("question -> answer")
    signature = cot.predict.signature
    assert list(signature.output_fields) == ["reasoning", "answer"]
    reasoning = signature.output_fields["reasoning"].json_schema_extra
    assert (reasoning["prefix"], reasoning["desc"]) == ("Reasoning:", "${reasoning}")

    fake_lm.answer(case["parses"][0]["completion"])
    with context(lm=lm):
        prediction = cot(**case["inputs"])
    assert sent_messages(fake_lm) == case["messages"]
    assert prediction.reasoning == "7 times 6 is 42."
    assert prediction.answer == "42"


def test_chain_of_thought_takes_a_custom_rationale_field(fake_lm, lm):
    cot = ChainOfThought("question -> answer", rationale_field=OutputField(desc="step by step"))
    extra = cot.predict.signature.output_fields["reasoning"].json_schema_extra
    assert extra["desc"] == "step by step"
    fake_lm.answer_fields({"reasoning": "r", "answer": "a"})
    assert asyncio.run(cot.acall(question="q", lm=lm)).answer == "a"


@needs_fixtures
def test_demos_are_sent_as_dspy_formats_them(fake_lm, lm):
    case = fixture("10_demos_two.json")
    predict = Predict("question -> answer")
    predict.demos = [Example(**demo) for demo in case["demos"]]
    fake_lm.answer(case["parses"][0]["completion"])
    predict(lm=lm, **case["inputs"])
    assert sent_messages(fake_lm) == case["messages"]


def test_class_signatures_and_typed_outputs(fake_lm, lm):
    class Count(Signature):
        """Count the words."""

        text: str = InputField()
        words: int = OutputField(desc="number of words")

    fake_lm.answer("[[ ## words ## ]]\n3\n\n[[ ## completed ## ]]")
    prediction = Predict(Count)(text="a b c", lm=lm)
    assert prediction.words == 3


def test_without_an_lm_the_error_says_how_to_configure_one():
    with pytest.raises(ConfigurationError, match="No LM is loaded"):
        Predict("question -> answer")(question="q")


@pytest.mark.parametrize("lm", [None, "openai/m"])
def test_no_usable_lm_is_a_value_error_as_in_dspy(lm):
    import dspy

    with pytest.raises(ValueError) as theirs:
        dspy.Predict("question -> answer")(question="q", lm=lm)
    with pytest.raises(ValueError) as ours:
        Predict("question -> answer")(question="q", lm=lm)
    assert type(theirs.value) is ValueError
    assert isinstance(ours.value, ConfigurationError)


def test_missing_or_mistyped_inputs_warn_and_still_call_the_lm(fake_lm, lm, caplog):
    # DSPy 3.4.1 warns and calls the LM (checked by tests/fidelity); strict checks are
    # the queue edge's job (Client.submit).
    fake_lm.answer_fields({"answer": "x"})
    predict = Predict("question, k: int -> answer")
    with caplog.at_level("WARNING"):
        assert predict(question="q", lm=lm).answer == "x"
        assert predict(question="q", k="many", lm=lm).answer == "x"
    messages = [record.getMessage() for record in caplog.records]
    assert "Missing: ['k']" in messages[0]
    assert messages[1].startswith("Type mismatch for field 'k': expected int")
    with pytest.raises(ValueError, match="keyword arguments") as caught:
        predict("q")
    assert isinstance(caught.value, InputError)


def test_lm_precedence_call_then_predictor_then_context(fake_lm, lm):
    other = LM("openai/other-model", api_base=fake_lm.openai_base, api_key="test", cache=False)
    third = LM("openai/third-model", api_base=fake_lm.openai_base, api_key="test", cache=False)
    fake_lm.answer_fields({"answer": "x"})
    predict = Predict("question -> answer")
    with context(lm=lm):
        predict(question="q")
        assert fake_lm.last_request["body"]["model"] == "gpt-4o-mini"
        predict.lm = other
        predict(question="q")
        assert fake_lm.last_request["body"]["model"] == "other-model"
        predict(question="q", lm=third)
        assert fake_lm.last_request["body"]["model"] == "third-model"


def test_config_reaches_the_request_and_n_gets_a_sampling_temperature(fake_lm, lm):
    fake_lm.add_rule(
        answers=["[[ ## answer ## ]]\none", "[[ ## answer ## ]]\ntwo", "[[ ## answer ## ]]\nthree"]
    )
    predict = Predict("question -> answer", max_tokens=50)
    prediction = predict(question="q", config={"n": 3}, lm=lm)
    body = fake_lm.last_request["body"]
    assert body["max_tokens"] == 50 and body["n"] == 3
    assert body["temperature"] == 0.7  # DSPy raises a near-zero temperature when n > 1
    assert prediction.answer == "one"
    assert prediction.completions.answer == ["one", "two", "three"]

    Predict("question -> answer", temperature=0.2)(question="q", lm=lm)
    assert fake_lm.last_request["body"]["temperature"] == 0.2


def test_signature_and_demos_can_be_overridden_per_call(fake_lm, lm):
    fake_lm.answer_fields({"summary": "short"})
    predict = Predict("question -> answer")
    prediction = predict(
        text="long text",
        signature=Signature("text -> summary"),
        demos=[Example(text="t", summary="s")],
        lm=lm,
    )
    assert prediction.summary == "short"
    messages = sent_messages(fake_lm)
    assert "`summary`" in messages[0]["content"]
    assert messages[1] == {"role": "user", "content": "[[ ## text ## ]]\nt"}


def test_calls_are_traced_only_when_a_trace_list_is_configured(fake_lm, lm):
    fake_lm.answer_fields({"answer": "x"})
    predict = Predict("question -> answer")
    with context(lm=lm, trace=[]):
        prediction = predict(question="q")
        trace = current().trace
        assert trace == [(predict, {"question": "q"}, prediction)]
    predict(question="q", lm=lm)
    assert current().trace is None


def test_the_configured_adapter_is_used(fake_lm, lm):
    fake_lm.answer_fields({"answer": "x"})
    with context(lm=lm, adapter=JSONAdapter()):
        assert Predict("question -> answer")(question="q").answer == "x"
    assert "Respond with a JSON object" in sent_messages(fake_lm)[-1]["content"]
    with context(lm=lm, adapter=ChatAdapter()):
        Predict("question -> answer")(question="q")
    assert "[[ ## completed ## ]]" in sent_messages(fake_lm)[-1]["content"]


def test_async_call_uses_the_async_lm_path(fake_lm, lm):
    fake_lm.answer_fields({"answer": "async"})

    async def run() -> Prediction:
        with context(lm=lm, trace=[]):
            prediction = await Predict("question -> answer").acall(question="q")
            assert len(current().trace or []) == 1
            return prediction

    assert asyncio.run(run()).answer == "async"


def test_reset_forgets_learned_state(lm):
    predict = Predict("question -> answer")
    predict.demos = [Example(question="q", answer="a")]
    predict.lm = lm
    predict.reset()
    assert (predict.demos, predict.lm, predict.traces, predict.train) == ([], None, [], [])
    assert repr(predict) == "Predict(question -> answer)"

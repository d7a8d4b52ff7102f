"""BestOfN and Refine: rollouts at temperature 1.0, reward threshold, feedback hints."""

from __future__ import annotations

import pytest

from dspyq.core.chain_of_thought import ChainOfThought
from dspyq.core.context import context, current
from dspyq.core.example import Prediction
from dspyq.core.predict import Predict
from dspyq.core.refine import BestOfN, Refine, describe_modules
from dspyq.errors import ConfigurationError, ProviderError
from dspyq.lm import LM
from dspyq.testing.fake_lm import FakeLMServer


@pytest.fixture
def lm(fake_lm: FakeLMServer) -> LM:
    return LM("openai/gpt-4o-mini", api_base=fake_lm.openai_base, api_key="test", cache=False)


def one_word(inputs: dict, prediction: Prediction) -> float:
    return 1.0 if len(str(prediction.answer).split()) == 1 else 0.0


def chat_answer(text: str) -> str:
    return f"[[ ## answer ## ]]\n{text}\n\n[[ ## completed ## ]]"


def test_best_of_n_stops_at_the_first_prediction_reaching_the_threshold(fake_lm, lm):
    fake_lm.add_rule(
        answers=[chat_answer("It is Paris"), chat_answer("Paris"), chat_answer("Lyon")]
    )
    best = BestOfN(Predict("question -> answer"), N=3, reward_fn=one_word, threshold=1.0)
    with context(lm=lm):
        prediction = best(question="Capital of France?")
    assert prediction.answer == "Paris"
    bodies = [entry["body"] for entry in fake_lm.requests]
    assert len(bodies) == 2
    assert all(body["temperature"] == 1.0 for body in bodies)
    assert all("rollout_id" not in body for body in bodies)


def test_best_of_n_returns_the_best_when_none_reaches_the_threshold(fake_lm, lm):
    fake_lm.add_rule(answers=[chat_answer("a b c"), chat_answer("a b"), chat_answer("a b c d")])

    def shortest(inputs: dict, prediction: Prediction) -> float:
        return -len(prediction.answer.split())

    best = BestOfN(Predict("question -> answer"), N=3, reward_fn=shortest, threshold=0.0)
    with context(lm=lm):
        assert best(question="q").answer == "a b"
    assert len(fake_lm.requests) == 3


def test_rollouts_run_on_copies_and_leave_the_module_alone(fake_lm, lm):
    fake_lm.answer(chat_answer("x"))
    module = Predict("question -> answer")
    module.lm = lm
    BestOfN(module, N=2, reward_fn=lambda i, p: 0.0, threshold=1.0)(question="q")
    assert module.lm is lm and lm.kwargs.get("temperature") is None
    assert len(fake_lm.requests) == 2


def test_only_the_best_attempts_trace_is_kept(fake_lm, lm):
    fake_lm.add_rule(answers=[chat_answer("too many words"), chat_answer("one")])
    best = BestOfN(Predict("question -> answer"), N=2, reward_fn=one_word, threshold=1.0)
    with context(lm=lm, trace=[]):
        prediction = best(question="q")
        trace = current().trace
    assert trace is not None and len(trace) == 1
    assert trace[0][2] is prediction


def test_failed_attempts_are_skipped_until_fail_count(fake_lm, lm):
    fake_lm.fail_next(1, status=400)
    fake_lm.answer(chat_answer("ok"))
    best = BestOfN(Predict("question -> answer"), N=3, reward_fn=one_word, threshold=1.0)
    with context(lm=lm):
        assert best(question="q").answer == "ok"

    fake_lm.fail_next(2, status=400)
    strict = BestOfN(
        Predict("question -> answer"), N=3, reward_fn=one_word, threshold=1.0, fail_count=1
    )
    with context(lm=lm), pytest.raises(ProviderError):  # DSPy: attempt 1 > 1 - 1 left
        strict(question="q")


def test_all_attempts_failing_returns_none_as_in_dspy(fake_lm, lm):
    fake_lm.fail_next(2, status=400)
    best = BestOfN(
        Predict("question -> answer"), N=2, reward_fn=one_word, threshold=1.0, fail_count=5
    )
    with context(lm=lm):
        assert best(question="q") is None


def test_an_lm_is_required():
    best = BestOfN(Predict("question -> answer"), N=2, reward_fn=one_word, threshold=1.0)
    with pytest.raises(ConfigurationError):
        best(question="q")


def test_wrapped_module_predictors_keep_dspy_names():
    refine = Refine(ChainOfThought("question -> answer"), N=2, reward_fn=one_word, threshold=1.0)
    assert [name for name, _ in refine.named_predictors()] == ["module.predict"]


def test_refine_asks_for_advice_and_passes_it_as_a_hint(fake_lm, lm):
    fake_lm.answer_fields(
        {"discussion": "Too wordy.", "advice": {"self": "Answer with a single word."}},
        match="program_code",
    )
    fake_lm.answer(chat_answer("Paris"), match="Answer with a single word")
    fake_lm.answer(chat_answer("The capital is Paris"))
    refine = Refine(Predict("question -> answer"), N=3, reward_fn=one_word, threshold=1.0)
    with context(lm=lm):
        prediction = refine(question="Capital of France?")

    assert prediction.answer == "Paris"
    bodies = [entry["body"] for entry in fake_lm.requests]
    assert len(bodies) == 3  # attempt, feedback, hinted attempt
    feedback_prompt = bodies[1]["messages"][-1]["content"]
    assert "[[ ## module_names ## ]]" in feedback_prompt
    assert "one_word" in feedback_prompt  # the reward function's code is shown
    hinted = bodies[2]["messages"]
    assert "`hint_` (str): A hint to the module from an earlier run" in hinted[0]["content"]
    assert "[[ ## hint_ ## ]]\nAnswer with a single word." in hinted[-1]["content"]


def test_refine_without_advice_needed_makes_one_call(fake_lm, lm):
    fake_lm.answer(chat_answer("Paris"))
    refine = Refine(Predict("question -> answer"), N=3, reward_fn=one_word, threshold=1.0)
    with context(lm=lm):
        assert refine(question="q").answer == "Paris"
    assert len(fake_lm.requests) == 1


def test_describe_modules_lists_each_predictor():
    text = describe_modules(ChainOfThought("question -> answer"))
    assert "Module predict" in text
    assert "1. `question` (str)" in text
    assert "2. `answer` (str)" in text
    assert (
        "Original Instructions: \n\t\tGiven the fields `question`, produce the fields `answer`."
        in text
    )

"""Example and Prediction behave like DSPy's: dict-like records with inputs and labels."""

from __future__ import annotations

import copy
import pickle

import pytest
from pydantic import BaseModel

from dspyq.core.example import Completions, Example, Prediction
from dspyq.errors import InputError


def test_fields_read_by_attribute_and_by_key():
    ex = Example(question="2+2?", answer="4")
    assert ex.question == "2+2?"
    assert ex["answer"] == "4"
    ex.context = ["math"]
    ex["extra"] = 1
    assert ex.context == ["math"] and ex.extra == 1
    assert "context" in ex and "missing" not in ex
    with pytest.raises(AttributeError):
        _ = ex.missing
    with pytest.raises(KeyError):
        _ = ex["missing"]


def test_base_example_or_dict_seeds_the_fields():
    base = Example(a=1, b=2)
    assert Example(base, c=3).toDict() == {"a": 1, "b": 2, "c": 3}
    assert Example({"x": 1}, y=2).toDict() == {"x": 1, "y": 2}


def test_with_inputs_splits_inputs_from_labels():
    ex = Example(question="q", context="c", answer="a").with_inputs("question", "context")
    assert ex.inputs().toDict() == {"question": "q", "context": "c"}
    assert ex.labels().toDict() == {"answer": "a"}
    assert ex.inputs()._input_keys == {"question", "context"}


def test_inputs_without_with_inputs_is_an_input_error():
    with pytest.raises(InputError, match="with_inputs"):
        Example(question="q").inputs()


def test_copy_and_without_keep_input_keys_and_leave_original_alone():
    ex = Example(question="q", answer="a").with_inputs("question")
    changed = ex.copy(answer="b")
    assert changed.answer == "b" and ex.answer == "a"
    assert changed.inputs().toDict() == {"question": "q"}
    trimmed = ex.without("answer")
    assert "answer" not in trimmed and "answer" in ex
    assert trimmed.inputs().toDict() == {"question": "q"}


def test_dict_views_hide_internal_dspy_keys():
    ex = Example(question="q", dspy_uuid="u1")
    assert ex.keys() == ["question"]
    assert ex.keys(include_dspy=True) == ["question", "dspy_uuid"]
    assert ex.values() == ["q"]
    assert ex.items() == [("question", "q")]
    assert len(ex) == 1
    assert list(ex) == ["question", "dspy_uuid"]
    assert ex.get("nope", 5) == 5
    assert dict(ex.items()) == {"question": "q"}


def test_equality_and_hash_follow_the_fields():
    assert Example(a=1) == Example(a=1)
    assert Example(a=1) != Example(a=2)
    assert Example(a=1) != {"a": 1}
    assert len({Example(a=1), Example(a=1)}) == 1


def test_repr_matches_dspy():
    ex = Example(question="q", dspy_split="train").with_inputs("question")
    assert repr(ex) == "Example({'question': 'q'}) (input_keys={'question'})"
    assert str(Example(a=1)) == "Example({'a': 1}) (input_keys=None)"


def test_todict_turns_nested_models_and_examples_into_dicts():
    class Point(BaseModel):
        x: int

    ex = Example(p=Point(x=1), inner=Example(a=1), items=[Point(x=2)])
    assert ex.toDict() == {"p": {"x": 1}, "inner": {"a": 1}, "items": [{"x": 2}]}


def test_examples_survive_deepcopy_and_pickle():
    ex = Example(question="q", answer=["a"]).with_inputs("question")
    for clone in (copy.deepcopy(ex), pickle.loads(pickle.dumps(ex))):
        assert clone == ex
        assert clone.inputs().toDict() == {"question": "q"}
    deep = copy.deepcopy(ex)
    deep.answer.append("b")
    assert ex.answer == ["a"]


def test_prediction_from_completions_takes_first_and_keeps_all():
    pred = Prediction.from_completions([{"answer": "a", "n": 1}, {"answer": "b", "n": 2}])
    assert pred.answer == "a"
    assert pred.completions is not None
    assert len(pred.completions) == 2
    assert pred.completions.answer == ["a", "b"]
    assert pred.completions["n"] == [1, 2]
    second = pred.completions[1]
    assert isinstance(second, Prediction) and second.answer == "b"
    with pytest.raises(IndexError):
        pred.completions[2]


def test_completions_from_columns_and_mismatched_columns():
    completions = Completions({"a": [1, 2], "b": [3, 4]})
    assert len(completions) == 2 and "a" in completions
    with pytest.raises(ValueError):
        Completions({"a": [1, 2], "b": [3]})
    ragged = Completions([{"a": 1}, {"a": 2, "b": 3}])
    assert ragged.b == [None, 3]


def test_prediction_repr_mentions_omitted_completions():
    single = Prediction(answer="x")
    assert repr(single) == "Prediction(\n    answer='x'\n)"
    many = Prediction.from_completions([{"answer": "a"}, {"answer": "b"}, {"answer": "c"}])
    assert repr(many) == (
        "Prediction(\n    answer='a',\n    completions=Completions(...)\n) (2 completions omitted)"
    )


def test_prediction_is_numeric_through_its_score():
    a, b = Prediction(score=0.5), Prediction(score=1.0)
    assert float(a) == 0.5
    assert a + b == 1.5 and 1 + a == 1.5 and sum([a, b]) == 1.5
    assert b / 2 == 0.5 and 1 / b == 1.0
    assert a < b and b >= a and a <= 0.5 and b > 0.9
    with pytest.raises(ValueError):
        float(Prediction(answer="x"))


def test_prediction_lm_usage_is_optional():
    pred = Prediction(answer="x")
    assert pred.get_lm_usage() is None
    pred.set_lm_usage({"openai/gpt-4o-mini": {"total_tokens": 3}})
    assert pred.get_lm_usage() == {"openai/gpt-4o-mini": {"total_tokens": 3}}
    assert "openai/gpt-4o-mini" not in pred  # usage is not a field

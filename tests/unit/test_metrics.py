"""The built-in QA metrics give SQuAD's and DSPy's answers on known cases."""

from __future__ import annotations

import pytest

from dspyq import metrics
from dspyq.core.example import Example, Prediction
from dspyq.metrics import (
    exact_match,
    f1_score,
    normalize_text,
    passage_has_answers,
)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("The Quick, Brown Fox!", "quick brown fox"),
        ("  An apple a day\tkeeps\n the doctor away. ", "apple day keeps doctor away"),
        ("Theater then anthem", "theater then anthem"),
        ("the-end", "theend"),
        ("U.S.A.", "usa"),
        ("", ""),
    ],
)
def test_normalize_text_lowercases_and_strips_punctuation_articles_and_spaces(
    raw: str, normalized: str
) -> None:
    assert normalize_text(raw) == normalized


def test_normalize_text_makes_composed_and_decomposed_accents_equal() -> None:
    assert normalize_text("Café") == normalize_text("Cafe\u0301")


def test_exact_match_ignores_case_punctuation_and_articles() -> None:
    assert exact_match("The Eiffel Tower.", "eiffel tower")
    assert not exact_match("Eiffel", "eiffel tower")


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        ("Paris", "paris", 1.0),
        # pred tokens [cat, sat, on, mat], gold [cat, on, mat]: P=3/4, R=1
        ("the cat sat on the mat", "a cat on a mat", 6 / 7),
        # repeated tokens count once per match: {x:2,y:1} & {x:1,y:2} = 2 tokens
        ("x x y", "x y y", 2 / 3),
        ("blue", "red", 0.0),
        # both empty after normalization: 0, as SQuAD v1.1 and DSPy do
        ("the", "a", 0.0),
    ],
)
def test_f1_score_is_squad_token_f1(pred: str, gold: str, expected: float) -> None:
    assert f1_score(pred, gold) == pytest.approx(expected)


def test_passage_has_answers_matches_whole_token_runs() -> None:
    passage = "Barack Obama was born in Honolulu, Hawaii, in 1961."
    assert passage_has_answers(passage, ["honolulu"])
    assert passage_has_answers(passage, ["nowhere", "Born in HONOLULU"])
    assert passage_has_answers(passage, ["Honolulu, Hawaii"])
    # the comma is a token of its own, so the answer without it is not a run of the passage
    assert not passage_has_answers(passage, ["Honolulu Hawaii"])
    assert not passage_has_answers(passage, ["Obam"])
    assert not passage_has_answers(passage, [])


def test_passage_has_answers_keeps_accented_words_whole() -> None:
    assert passage_has_answers("Un café noir.", ["CAFÉ"])
    assert not passage_has_answers("Un café noir.", ["caf"])


def test_metrics_are_module_level_functions_reachable_by_import_path() -> None:
    for name in metrics.__all__:
        function = getattr(metrics, name)
        assert callable(function)
        assert "." not in function.__qualname__


def test_answer_exact_match_accepts_one_gold_answer_or_several() -> None:
    one = Example(question="capital of France?", answer="Paris")
    several = Example(question="largest city of the US?", answer=["New York", "NYC"])

    assert metrics.answer_exact_match(one, Prediction(answer="paris."))
    assert not metrics.answer_exact_match(one, Prediction(answer="Lyon"))
    assert metrics.answer_exact_match(several, Prediction(answer="nyc"))
    assert not metrics.answer_exact_match(several, Prediction(answer="New York City"))


def test_answer_exact_match_with_frac_below_one_uses_the_best_f1() -> None:
    example = Example(answer=["the Eiffel Tower", "Tour Eiffel"])
    pred = Prediction(answer="Eiffel Tower in Paris")  # F1 with "eiffel tower" is 2/3

    assert metrics.answer_exact_match(example, pred, frac=0.6)
    assert not metrics.answer_exact_match(example, pred, frac=0.7)
    assert not metrics.answer_exact_match(example, pred)


def test_answer_exact_match_compares_typed_answers_as_text() -> None:
    assert metrics.answer_exact_match(Example(answer="4"), Prediction(answer=4))


def test_answer_metrics_reject_an_answer_that_is_not_text() -> None:
    with pytest.raises(ValueError, match="str or a list of str"):
        metrics.answer_exact_match(Example(answer=4), Prediction(answer="4"))


def test_answer_passage_match_looks_for_the_answer_in_any_retrieved_passage() -> None:
    example = Example(question="Where was Obama born?", answer="Honolulu")
    passages = ["Obama served two terms.", "He was born in Honolulu, Hawaii."]

    assert metrics.answer_passage_match(example, Prediction(context=passages))
    assert not metrics.answer_passage_match(example, Prediction(context=passages[:1]))
    assert metrics.answer_passage_match(example, Prediction(context=passages[1]))

"""Evaluate's scoring, ordering, error accounting and reporting, on plain-function programs.

A program is anything callable with the example's inputs, as in DSPy, so these tests
use small functions; tests/unit/test_evaluate_program.py runs a real Predict over the
fake LM server.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dspyq.core.context import context, current
from dspyq.core.example import Example, Prediction
from dspyq.errors import DspyqError
from dspyq.metrics import answer_exact_match
from dspyq.optimize.evaluate import Evaluate, EvaluationResult


def make_devset(pairs: list[tuple[str, str]]) -> list[Example]:
    return [Example(question=q, answer=a).with_inputs("question") for q, a in pairs]


ARITHMETIC = make_devset([("1+1", "2"), ("2+2", "4"), ("3+3", "6"), ("4+4", "8")])


def adder(question: str) -> Prediction:
    """Right on every question except 3+3."""
    left, right = question.split("+")
    total = int(left) + int(right)
    return Prediction(answer=str(total if total != 6 else 7))


def test_score_is_the_percentage_of_the_metric_total_rounded_to_two_decimals() -> None:
    result = Evaluate(devset=ARITHMETIC, metric=answer_exact_match)(adder)

    assert isinstance(result, EvaluationResult)
    assert result.score == 75.0
    assert [score for _, _, score in result.results] == [True, True, False, True]

    thirds = Evaluate(devset=ARITHMETIC[1:], metric=answer_exact_match)(adder)
    assert thirds.score == 66.67


def test_results_hold_the_example_and_the_programs_prediction() -> None:
    result = Evaluate(devset=ARITHMETIC, metric=answer_exact_match)(adder)

    example, prediction, _ = result.results[2]
    assert example is ARITHMETIC[2]
    assert prediction.answer == "7"
    assert result["score"] == result.score


def test_metric_may_return_bool_int_float_or_a_scored_prediction() -> None:
    values: list[Any] = [True, 1, 0.5, Prediction(score=0.25)]

    def metric(example: Example, pred: Prediction, trace: Any = None) -> Any:
        assert trace is None
        return values[int(example.question[0]) - 1]

    result = Evaluate(devset=ARITHMETIC, metric=metric)(adder)

    assert result.score == round(100 * (1 + 1 + 0.5 + 0.25) / 4, 2)


def test_rows_come_back_in_devset_order_when_threads_finish_out_of_order() -> None:
    devset = make_devset([(f"{i}+0", str(i)) for i in range(8)])
    finished: list[int] = []
    lock = threading.Lock()

    def slow_first(question: str) -> Prediction:
        index = int(question.split("+")[0])
        time.sleep(0.02 * (8 - index))  # the first example finishes last
        with lock:
            finished.append(index)
        return Prediction(answer=str(index))

    result = Evaluate(devset=devset, metric=answer_exact_match, num_threads=4)(slow_first)

    assert finished != sorted(finished)
    assert [example.question for example, _, _ in result.results] == [
        example.question for example in devset
    ]
    assert [prediction.answer for _, prediction, _ in result.results] == [str(i) for i in range(8)]
    assert result.score == 100.0


def test_threads_run_examples_concurrently() -> None:
    barrier = threading.Barrier(4, timeout=5)

    def meet(question: str) -> Prediction:
        barrier.wait()  # would time out if fewer than 4 examples ran at once
        return adder(question)

    result = Evaluate(devset=ARITHMETIC, metric=answer_exact_match, num_threads=4)(meet)

    assert result.score == 75.0


def test_worker_threads_see_the_callers_context() -> None:
    seen: list[Any] = []
    lock = threading.Lock()

    def reads_context(question: str) -> Prediction:
        with lock:
            seen.append((current().get("marker"), threading.current_thread().name))
        return adder(question)

    with context(marker="from-caller"):
        Evaluate(devset=ARITHMETIC, metric=answer_exact_match, num_threads=3)(reads_context)

    assert [marker for marker, _ in seen] == ["from-caller"] * 4
    assert all(name != threading.main_thread().name for _, name in seen)


def test_num_threads_defaults_to_the_configured_value() -> None:
    barrier = threading.Barrier(2, timeout=5)

    def pairs(question: str) -> Prediction:
        barrier.wait()
        return adder(question)

    with context(num_threads=2):
        result = Evaluate(devset=ARITHMETIC[:2], metric=answer_exact_match)(pairs)

    assert result.score == 100.0


def flaky(question: str) -> Prediction:
    """Raises on questions starting with 2 or 4."""
    if question[0] in "24":
        raise RuntimeError(f"cannot answer {question}")
    return adder(question)


def test_an_example_that_raises_scores_failure_score_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    result = Evaluate(
        devset=ARITHMETIC, metric=answer_exact_match, num_threads=2, failure_score=0.5
    )(flaky)

    # 1+1 right, 2+2 failed (0.5), 3+3 wrong, 4+4 failed (0.5)
    assert result.score == 50.0
    failed = [row for row in result.results if row[2] == 0.5]
    assert [example.question for example, _, _ in failed] == ["2+2", "4+4"]
    assert all(
        isinstance(prediction, Prediction) and len(prediction) == 0 for _, prediction, _ in failed
    )
    errors = [record for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 2
    assert "cannot answer" in errors[0].getMessage()


def test_a_metric_that_raises_or_returns_no_number_counts_as_an_error() -> None:
    def picky(example: Example, pred: Prediction, trace: Any = None) -> Any:
        if example.question == "1+1":
            raise KeyError("boom")
        if example.question == "2+2":
            return None
        return answer_exact_match(example, pred)

    result = Evaluate(devset=ARITHMETIC, metric=picky, max_errors=3)(adder)

    assert [score for _, _, score in result.results] == [0.0, 0.0, False, True]
    assert result.score == 25.0


def test_reaching_max_errors_stops_the_evaluation() -> None:
    evaluate = Evaluate(devset=ARITHMETIC, metric=answer_exact_match, max_errors=1)

    with pytest.raises(DspyqError, match="max_errors=1") as raised:
        evaluate(flaky)

    assert isinstance(raised.value.__cause__, RuntimeError)
    # as in DSPy, the evaluation stops when the error count reaches max_errors
    with pytest.raises(DspyqError, match="max_errors=2"):
        Evaluate(devset=ARITHMETIC, metric=answer_exact_match, max_errors=2)(flaky)
    assert Evaluate(devset=ARITHMETIC, metric=answer_exact_match, max_errors=3)(flaky).score == 25.0


def test_max_errors_defaults_to_the_configured_value() -> None:
    with context(max_errors=0), pytest.raises(DspyqError):
        Evaluate(devset=ARITHMETIC, metric=answer_exact_match)(flaky)


def test_provide_traceback_logs_the_exception_traceback(caplog: pytest.LogCaptureFixture) -> None:
    Evaluate(devset=ARITHMETIC[:2], metric=answer_exact_match, provide_traceback=True)(flaky)

    (error,) = [record for record in caplog.records if record.levelname == "ERROR"]
    assert error.exc_info is not None
    assert isinstance(error.exc_info[1], RuntimeError)


def test_call_arguments_override_the_constructor() -> None:
    evaluate = Evaluate(devset=ARITHMETIC, metric=lambda example, pred, trace=None: False)

    assert evaluate(adder).score == 0.0
    assert evaluate(adder, metric=answer_exact_match).score == 75.0
    assert evaluate(adder, metric=answer_exact_match, devset=ARITHMETIC[:2]).score == 100.0


def test_missing_metric_and_empty_devset() -> None:
    with pytest.raises(DspyqError, match="metric"):
        Evaluate(devset=ARITHMETIC)(adder)

    empty = Evaluate(devset=[], metric=answer_exact_match)(adder)
    assert (empty.score, empty.results) == (0.0, [])


def test_pre_3_options_are_accepted_and_ignored() -> None:
    evaluate = Evaluate(
        devset=ARITHMETIC, metric=answer_exact_match, return_all_scores=True, return_outputs=True
    )

    assert evaluate(adder).score == 75.0


def test_progress_bar_shows_the_running_average_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    Evaluate(devset=ARITHMETIC, metric=answer_exact_match, display_progress=True)(adder)

    captured = capsys.readouterr()
    assert "Average Metric: 3 / 4 (75.0%)" in captured.err
    assert "Average Metric" not in captured.out

    Evaluate(devset=ARITHMETIC, metric=answer_exact_match)(adder)
    assert "Average Metric" not in capsys.readouterr().err


def test_display_table_prints_the_first_rows(capsys: pytest.CaptureFixture[str]) -> None:
    Evaluate(devset=ARITHMETIC, metric=answer_exact_match, display_table=2)(adder)

    out = capsys.readouterr().out
    for column in ("question", "example_answer", "pred_answer", "answer_exact_match"):
        assert column in out
    assert "1+1" in out and "2+2" in out
    assert "3+3" not in out
    assert "2 more rows not displayed" in out

    Evaluate(devset=ARITHMETIC, metric=answer_exact_match, display_table=True)(adder)
    assert "4+4" in capsys.readouterr().out


def test_results_can_be_saved_as_json_and_csv(tmp_path: Path) -> None:
    json_path, csv_path = tmp_path / "results.json", tmp_path / "results.csv"

    Evaluate(
        devset=ARITHMETIC, metric=answer_exact_match, save_as_json=json_path, save_as_csv=csv_path
    )(adder)

    rows = json.loads(json_path.read_text())
    assert rows[2] == {
        "question": "3+3",
        "example_answer": "6",
        "pred_answer": "7",
        "answer_exact_match": False,
    }
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "question,example_answer,pred_answer,answer_exact_match"
    assert lines[3] == "3+3,6,7,False"

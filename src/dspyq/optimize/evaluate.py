"""``Evaluate``: run a program over a devset, score each prediction, report the average.

Same contract as DSPy 3.x's ``dspy.Evaluate``: the score is a percentage rounded to
two decimals, ``results`` holds one ``(example, prediction, score)`` row per example
in devset order, and an example whose program or metric raises scores
``failure_score`` instead of stopping the run (until ``max_errors`` is reached, as in DSPy).
Examples run on a thread pool; each task runs in a copy of the caller's context
variables (``bind_context``), so the ``configure``/``context`` settings in force at
the call (LM, adapter ...) are the ones every thread sees.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dspyq.core.callbacks import with_callbacks
from dspyq.core.context import bind_context, current
from dspyq.core.example import Example, Prediction
from dspyq.errors import DspyqError

__all__ = ["CandidateScore", "Evaluate", "EvaluationResult", "Metric"]

logger = logging.getLogger(__name__)

Metric = Callable[..., Any]
"""A metric is called as ``metric(example, prediction)`` (DSPy's ``trace=None`` left to default)
and returns a bool, an int, a float, or an object with a numeric ``score``."""

EvaluationRow = tuple[Example, Prediction, Any]

DEFAULT_MAX_ERRORS = 10  # DSPy's settings.max_errors
_CELL_LIMIT = 100  # characters of a value shown in one table cell


class EvaluationResult(Prediction):
    """What ``Evaluate`` returns: ``score`` (percentage, 0-100) and ``results`` rows.

    A ``Prediction``, as in DSPy, so code that reads ``result.score`` or
    ``result["score"]`` works alike.
    """

    def __init__(self, score: float, results: list[EvaluationRow]) -> None:
        super().__init__(score=score, results=results)

    def __repr__(self) -> str:
        return (
            f"EvaluationResult(score={self.score}, results=<list of {len(self.results)} results>)"
        )


class Evaluate:
    """Evaluate a program on ``devset`` with ``metric``; call the instance with the program.

    ``display_table`` is a bool (all rows) or the number of rows to show.
    ``return_all_scores`` / ``return_outputs`` (pre-3.0 DSPy options) and other
    unknown keyword arguments are accepted and ignored: the result always carries
    both the score and the rows.
    """

    def __init__(
        self,
        *,
        devset: Sequence[Example],
        metric: Metric | None = None,
        num_threads: int | None = None,
        display_progress: bool = False,
        display_table: bool | int = False,
        max_errors: int | None = None,
        provide_traceback: bool | None = None,
        failure_score: float = 0.0,
        save_as_csv: str | Path | None = None,
        save_as_json: str | Path | None = None,
        **kwargs: Any,
    ) -> None:
        self.devset = list(devset)
        self.metric = metric
        self.num_threads = num_threads
        self.display_progress = display_progress
        self.display_table = display_table
        self.max_errors = max_errors
        self.provide_traceback = provide_traceback
        self.failure_score = failure_score
        self.save_as_csv = save_as_csv
        self.save_as_json = save_as_json
        if kwargs:
            logger.debug("Evaluate ignores options %s", sorted(kwargs))

    @with_callbacks
    def __call__(
        self,
        program: Callable[..., Any],
        metric: Metric | None = None,
        devset: Sequence[Example] | None = None,
        num_threads: int | None = None,
        display_progress: bool | None = None,
        display_table: bool | int | None = None,
        save_as_csv: str | Path | None = None,
        save_as_json: str | Path | None = None,
    ) -> EvaluationResult:
        """Run ``program(**example.inputs())`` on every example and score it; arguments override."""
        metric = metric if metric is not None else self.metric
        if metric is None:
            raise DspyqError("Evaluate needs a metric: pass metric= to Evaluate or to the call")
        examples = list(devset if devset is not None else self.devset)
        threads = num_threads or self.num_threads or _setting("num_threads") or 1
        show_progress = self.display_progress if display_progress is None else display_progress
        table_rows = self.display_table if display_table is None else display_table

        results = self._run_all(program, metric, examples, int(threads), show_progress)
        total = sum(_as_number(score) for _, _, score in results)
        score = round(100 * total / len(examples), 2) if examples else 0.0
        logger.info("Average Metric: %s / %d (%.1f%%)", _format_number(total), len(examples), score)

        metric_name = getattr(metric, "__name__", type(metric).__name__)
        if table_rows:
            _display_table(results, metric_name, table_rows)
        csv_path = save_as_csv or self.save_as_csv
        json_path = save_as_json or self.save_as_json
        if csv_path or json_path:
            rows = [_flatten_row(*row, metric_name) for row in results]
            if csv_path:
                _save_csv(rows, Path(csv_path))
            if json_path:
                Path(json_path).write_text(json.dumps(rows, indent=2, default=str))
        return EvaluationResult(score=score, results=results)

    def _run_all(
        self,
        program: Callable[..., Any],
        metric: Metric,
        examples: list[Example],
        threads: int,
        show_progress: bool,
    ) -> list[EvaluationRow]:
        """Score every example on a pool of ``threads``; rows come back in devset order."""
        max_errors = self.max_errors
        if max_errors is None:
            max_errors = _setting("max_errors")
            max_errors = DEFAULT_MAX_ERRORS if max_errors is None else int(max_errors)
        rows: list[EvaluationRow | None] = [None] * len(examples)
        errors = 0
        total = 0.0

        def score_example(example: Example) -> tuple[Prediction, Any]:
            prediction = program(**example.inputs())
            value = metric(example, prediction)
            _as_number(value)  # a metric that returns no number is this example's error
            return prediction, value

        with metric_progress(show_progress, len(examples)) as advance:
            pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dspyq-evaluate")
            try:
                # Bound here, in the caller's thread: each task runs in its own copy of
                # the caller's context, so it sees the caller's LM and adapter.
                run_in_context = bind_context(score_example)
                futures: dict[Future[tuple[Prediction, Any]], int] = {
                    pool.submit(run_in_context, example): index
                    for index, example in enumerate(examples)
                }
                for future in as_completed(futures):
                    index = futures[future]
                    example = examples[index]
                    try:
                        prediction, value = future.result()
                    except Exception as exc:
                        errors += 1
                        self._log_error(example, exc)
                        if errors >= max_errors:  # DSPy stops when the count reaches it
                            raise DspyqError(
                                f"Evaluation stopped: {errors} examples failed, "
                                f"reaching max_errors={max_errors}",
                                context={"errors": errors, "max_errors": max_errors},
                            ) from exc
                        prediction, value = Prediction(), self.failure_score
                    rows[index] = (example, prediction, value)
                    total += _as_number(value)
                    advance(total)
            finally:
                # On an error or interrupt, drop what has not started and let in-flight
                # examples finish, so no thread outlives the call.
                pool.shutdown(wait=True, cancel_futures=True)
        return [row for row in rows if row is not None]

    def _log_error(self, example: Example, exc: Exception) -> None:
        provide_traceback = self.provide_traceback
        if provide_traceback is None:
            provide_traceback = bool(_setting("provide_traceback"))
        if provide_traceback:
            logger.error("Error for %r: %s", example, exc, exc_info=exc)
        else:
            logger.error(
                "Error for %r: %s. Set provide_traceback=True for the traceback.", example, exc
            )


class CandidateScore(BaseModel):
    """A candidate's score on the valset: the percentage and each example's metric value."""

    score: float
    subscores: list[Any]


def _setting(name: str) -> Any:
    """An optional runtime setting (``num_threads``, ``max_errors`` ...), None when unset."""
    return current().get(name)


def numeric_score(value: Any) -> float | None:
    """A metric result as a number (bools and numbers as is, else the object's numeric
    ``score``), or None when it holds no number."""
    if isinstance(value, bool | int | float):
        return float(value)
    score = getattr(value, "score", None)
    return float(score) if isinstance(score, bool | int | float) else None


def _as_number(value: Any) -> float:
    """A metric result as a number; a TypeError when it holds none."""
    number = numeric_score(value)
    if number is not None:
        return number
    raise TypeError(
        f"metric returned {type(value).__name__}; expected a bool, an int, a float, "
        "or an object with a numeric score"
    )


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


@contextmanager
def metric_progress(enabled: bool, total: int) -> Iterator[Callable[[float], None]]:
    """A rich progress bar on stderr showing the running average; a no-op when disabled."""
    if not enabled:
        yield lambda _total: None
        return
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    task = progress.add_task("Average Metric: 0 / 0 (0.0%)", total=total)
    done = 0

    def advance(running_total: float) -> None:
        nonlocal done
        done += 1
        percent = 100 * running_total / done
        description = f"Average Metric: {_format_number(running_total)} / {done} ({percent:.1f}%)"
        progress.update(task, advance=1, description=description)

    with progress:
        yield advance


def _record_fields(record: Any) -> dict[str, Any]:
    """The fields of an Example or Prediction as a plain dict."""
    return dict(record.items())


def _flatten_row(
    example: Example, prediction: Prediction, score: Any, metric_name: str
) -> dict[str, Any]:
    """One result as a flat dict: example fields, prediction fields, then the metric's score.

    A prediction field named like an example field (``answer``) would hide the gold
    value, so both are kept as ``example_answer`` and ``pred_answer``.
    """
    example_fields = _record_fields(example)
    prediction_fields = _record_fields(prediction)
    row: dict[str, Any] = {}
    for key, value in example_fields.items():
        row[f"example_{key}" if key in prediction_fields else key] = value
    for key, value in prediction_fields.items():
        row[f"pred_{key}" if key in example_fields else key] = value
    row[metric_name] = score
    return row


def _save_csv(rows: list[dict[str, Any]], path: Path) -> None:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= _CELL_LIMIT else text[: _CELL_LIMIT - 1] + "…"


def _display_table(results: list[EvaluationRow], metric_name: str, limit: bool | int) -> None:
    """Print the first ``limit`` rows (all when ``limit`` is True) as a rich table on stdout."""
    shown = results if limit is True else results[: int(limit)]
    rows = [_flatten_row(*row, metric_name) for row in shown]
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    table = Table(title=f"Evaluation ({metric_name})", show_lines=True)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(column, "")) for column in columns))
    console = Console()
    console.print(table)
    if len(shown) < len(results):
        console.print(f"... {len(results) - len(shown)} more rows not displayed ...")

"""``Parallel`` resubmits stragglers as DSPy 3.4.1 does: the same results, failures and
logged errors, the same number of calls per item, and no wait for the slow copy."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter
from typing import Any

import dspy
import pytest

import dspyq

pytestmark = pytest.mark.usefixtures("fresh_configurations")


class Script:
    """Per item: how long its first call sleeps, and what that call and later ones do."""

    def __init__(self, slow: dict[str, float], first_fails: set[str], later_fails: set[str]):
        self.slow, self.first_fails, self.later_fails = slow, first_fails, later_fails
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.running = 0
        self.idle = threading.Condition(self.lock)

    def settle(self) -> None:
        """Wait for the slow copies nobody waited for, so they log before the next test."""
        with self.idle:
            self.idle.wait_for(lambda: self.running == 0, timeout=30)
        time.sleep(0.3)  # the executor logs a copy's error just after the call returns

    def __call__(self, pkg: Any, item: str) -> Any:
        with self.lock:
            self.calls[item] += 1
            self.running += 1
            first = self.calls[item] == 1
        try:
            return self._answer(pkg, item, first)
        finally:
            with self.idle:
                self.running -= 1
                self.idle.notify_all()

    def _answer(self, pkg: Any, item: str, first: bool) -> Any:
        if first:
            time.sleep(self.slow.get(item, 0.0))
        if item in (self.first_fails if first else self.later_fails):
            raise ValueError(f"{item} failed on call {'1' if first else 'n'}")
        return pkg.Prediction(answer=item.upper())


def run(pkg: Any, script: Script, caplog: Any, **options: Any) -> tuple[Any, ...]:
    module = type("Scripted", (pkg.Module,), {"forward": lambda _s, q: script(pkg, q)})()
    items = [f"q{i}" for i in range(options.pop("count", 4))]
    caplog.clear()
    began = time.monotonic()
    results, failed, errors = pkg.Parallel(
        num_threads=4, return_failed_examples=True, disable_progress_bar=True, **options
    )([(module, {"q": item}) for item in items])
    elapsed = time.monotonic() - began
    script.settle()
    # The pair's module prints differently (DSPy's repr of a module is its predictors).
    logged = sorted(
        re.sub(r"^Error for \(.*?, \{", "Error for {", r.getMessage())
        for r in caplog.records
        if r.levelno == logging.ERROR
    )
    shapes = [None if r is None else r.answer for r in results]
    return shapes, failed, [repr(e) for e in errors], dict(script.calls), logged, elapsed


def both(caplog: Any, script: dict[str, Any], **options: Any) -> tuple[Any, Any]:
    theirs = run(dspy, Script(**script), caplog, **dict(options))
    ours = run(dspyq, Script(**script), caplog, **dict(options))
    assert ours[:5] == theirs[:5]
    return theirs, ours


def test_a_straggler_is_resubmitted_and_its_copy_answers(caplog: Any) -> None:
    theirs, ours = both(caplog, {"slow": {"q2": 4.0}, "first_fails": set(), "later_fails": set()},
                        timeout=1)  # fmt: skip
    assert ours[0] == ["Q0", "Q1", "Q2", "Q3"] and ours[3]["q2"] == 2
    assert theirs[5] < 3.5 and ours[5] < 3.5  # neither waited for the slow first call


def test_no_resubmission_without_a_timeout(caplog: Any) -> None:
    _, ours = both(caplog, {"slow": {"q1": 2.0}, "first_fails": set(), "later_fails": set()},
                   timeout=0)  # fmt: skip
    assert ours[3] == {"q0": 1, "q1": 1, "q2": 1, "q3": 1} and ours[5] >= 2


def test_no_resubmission_while_more_than_straggler_limit_tasks_run(caplog: Any) -> None:
    """All four are late after a second, but only the last is resubmitted, once alone."""
    slow = {"q0": 2.0, "q1": 2.0, "q2": 2.0, "q3": 4.0}
    _, ours = both(caplog, {"slow": slow, "first_fails": set(), "later_fails": set()},
                   timeout=1, straggler_limit=1)  # fmt: skip
    assert ours[3] == {"q0": 1, "q1": 1, "q2": 1, "q3": 2} and ours[5] < 3.5


def test_a_straggler_that_would_fail_is_rescued_by_its_copy(caplog: Any) -> None:
    _, ours = both(caplog, {"slow": {"q3": 3.0}, "first_fails": {"q3"}, "later_fails": set()},
                   timeout=1)  # fmt: skip
    assert ours[1] == [] and ours[0][3] == "Q3"


def test_a_failing_copy_is_reported_and_the_slow_answer_still_kept(caplog: Any) -> None:
    _, ours = both(caplog, {"slow": {"q0": 2.5}, "first_fails": set(), "later_fails": {"q0"}},
                   timeout=1)  # fmt: skip
    assert ours[0][0] == "Q0" and [e["q"] for e in ours[1]] == ["q0"]
    assert ours[4] == [
        "Error for {'q': 'q0'}): q0 failed on call n. Set `provide_traceback=True` for traceback."
    ]


def test_max_errors_cancels_as_in_dspy(caplog: Any) -> None:
    def cancelled(pkg: Any) -> str:
        script = Script({}, {"q0", "q1", "q2"}, {"q0", "q1", "q2"})
        with pytest.raises(Exception) as caught:
            run(pkg, script, caplog, max_errors=2, count=3)
        return f"{type(caught.value).__name__}: {caught.value}"

    assert cancelled(dspyq) == cancelled(dspy)


def test_the_constructor_keeps_dspys_settings() -> None:
    names = ("num_threads", "max_errors", "timeout", "straggler_limit", "provide_traceback")
    for options in ({}, {"timeout": 5, "straggler_limit": 1, "num_threads": 2, "max_errors": 4}):
        theirs, ours = dspy.Parallel(**options), dspyq.Parallel(**options)
        assert {n: getattr(ours, n) for n in names} == {n: getattr(theirs, n) for n in names}

"""``Parallel`` and ``Module.batch``: run (module, example) pairs on a thread pool, as DSPy does.

Results come back in input order; a failed pair's slot is ``None`` and its exception
is kept apart (``return_failed_examples`` hands both back), as in DSPy. When the number of
failures reaches ``max_errors`` the remaining work is cancelled and a plain
``Exception("Execution cancelled due to errors or interruption.")`` is raised, which is
what DSPy 3.4.1 raises, so ``except Exception`` code written for DSPy behaves the same.

Stragglers are handled as DSPy does: once at most ``straggler_limit`` tasks are
unfinished, any of them running for ``timeout`` seconds or more is submitted again
(each submission at most once); whichever copy finishes first gives the result and
the call returns without waiting for the other, which is left to finish unobserved.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from dspyq.core.context import bind_context, current
from dspyq.core.example import Example

__all__ = ["CANCELLED_MESSAGE", "Parallel", "run_parallel"]

logger = logging.getLogger(__name__)

CANCELLED_MESSAGE = "Execution cancelled due to errors or interruption."
DEFAULT_NUM_THREADS = 8  # DSPy's settings.num_threads
DEFAULT_MAX_ERRORS = 10  # DSPy's settings.max_errors
POLL_SECONDS = 1.0  # how often DSPy looks for stragglers while nothing finishes
_UNSET = object()  # a result slot not filled yet (a module may return None)
_SKIPPED = object()  # a task that found the run cancelled and did not start


class Parallel:
    """Run ``[(module, example), ...]`` concurrently; see the module docstring.

    An ``Example`` is passed as ``module(**example.inputs())`` (``access_examples``),
    a dict as keyword arguments, a tuple as positional arguments, a list only to a
    nested ``Parallel``; anything else is that pair's ``ValueError``.
    """

    def __init__(
        self,
        num_threads: int | None = None,
        max_errors: int | None = None,
        access_examples: bool = True,
        return_failed_examples: bool = False,
        provide_traceback: bool | None = None,
        disable_progress_bar: bool = False,
        timeout: int = 120,
        straggler_limit: int = 3,
    ) -> None:
        config = current()
        self.num_threads = num_threads or config.get("num_threads") or DEFAULT_NUM_THREADS
        configured = config.get("max_errors")
        default_errors = DEFAULT_MAX_ERRORS if configured is None else configured
        self.max_errors = default_errors if max_errors is None else max_errors
        self.access_examples = access_examples
        self.return_failed_examples = return_failed_examples
        self.provide_traceback = provide_traceback
        self.disable_progress_bar = disable_progress_bar
        self.timeout = timeout  # seconds before a straggler is submitted again (0: never)
        self.straggler_limit = straggler_limit
        self.failed_examples: list[Any] = []
        self.exceptions: list[Exception] = []

    def forward(self, exec_pairs: list[tuple[Any, Any]], num_threads: int | None = None) -> Any:
        threads = num_threads if num_threads is not None else self.num_threads
        results, failed, errors = run_parallel(
            self._run_pair,
            exec_pairs,
            num_threads=threads,
            max_errors=self.max_errors,
            provide_traceback=self.provide_traceback,
            timeout=self.timeout,
            straggler_limit=self.straggler_limit,
        )
        if not self.return_failed_examples:
            return results
        for index in failed:
            self.failed_examples.append(exec_pairs[index][1])
            self.exceptions.append(errors[index])
        return results, self.failed_examples, self.exceptions

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def _run_pair(self, pair: tuple[Any, Any]) -> Any:
        module, example = pair
        if isinstance(example, Example):
            return module(**example.inputs()) if self.access_examples else module(example)
        if isinstance(example, dict):
            return module(**example)
        if isinstance(example, list) and isinstance(module, Parallel):
            return module(example)
        if isinstance(example, tuple):
            return module(*example)
        raise ValueError(
            f"Invalid example type: {type(example)}, only supported types are "
            "Example, dict, list and tuple"
        )


def run_parallel(
    function: Callable[[Any], Any],
    items: Sequence[Any],
    *,
    num_threads: int,
    max_errors: int,
    provide_traceback: bool | None = None,
    timeout: float = 120,
    straggler_limit: int = 3,
) -> tuple[list[Any], list[int], dict[int, Exception]]:
    """``function`` over ``items`` on ``num_threads`` threads, in the caller's configuration.

    Returns the results in order (``None`` for an item that failed or never ran), the
    failed indices in the order they were seen, and each failed index's exception.
    ``timeout`` and ``straggler_limit`` resubmit slow tasks (see the module docstring);
    on one thread everything runs in order on the caller's thread, without resubmission.
    """
    run = _Run(function, items, max_errors, provide_traceback)
    if num_threads == 1:  # on the caller's thread, as DSPy's sequential path
        for index in range(len(items)):
            if run.cancelled.is_set():
                break
            run.record(index, run.attempt(index))
    else:
        run.on_pool(num_threads, timeout, straggler_limit)
    if run.cancelled.is_set():
        logger.warning(CANCELLED_MESSAGE)
        raise Exception(CANCELLED_MESSAGE)  # DSPy's exact exception, see module docstring
    results = [None if result is _UNSET else result for result in run.results]
    return results, run.failed, run.errors


class _Run:
    """The state of one ``run_parallel`` call: result slots, failures, the error count."""

    def __init__(
        self,
        function: Callable[[Any], Any],
        items: Sequence[Any],
        max_errors: int,
        provide_traceback: bool | None,
    ) -> None:
        self.function, self.items, self.max_errors = function, items, max_errors
        self.show_traceback = provide_traceback
        if provide_traceback is None:
            self.show_traceback = bool(current().get("provide_traceback"))
        self.results: list[Any] = [_UNSET] * len(items)
        self.failed: list[int] = []
        self.errors: dict[int, Exception] = {}
        self.error_count = 0  # every failed attempt, a straggler's copy included
        self.lock = threading.Lock()
        self.cancelled = threading.Event()

    def attempt(self, index: int) -> Any:
        """The item's result, or the exception it raised (counted, logged)."""
        item = self.items[index]
        try:
            return self.function(item)
        except Exception as exc:
            with self.lock:
                self.error_count += 1
                if self.error_count >= self.max_errors:
                    self.cancelled.set()
            if self.show_traceback:
                logger.error("Error for %s: %s", item, exc, exc_info=exc)
            else:
                logger.error(
                    "Error for %s: %s. Set `provide_traceback=True` for traceback.", item, exc
                )
            return exc

    def record(self, index: int, outcome: Any) -> None:
        if isinstance(outcome, Exception):
            self.failed.append(index)
            self.errors[index] = outcome
        else:
            self.results[index] = outcome

    def _done(self) -> bool:
        return all(result is not _UNSET for result in self.results)

    def on_pool(self, num_threads: int, timeout: float, straggler_limit: int) -> None:
        started: dict[int, float] = {}  # submission number -> when a thread took it up

        def task(submission: int, index: int) -> tuple[int, Any]:
            if self.cancelled.is_set():
                return index, _SKIPPED
            started[submission] = time.time()
            return index, self.attempt(index)

        pool = ThreadPoolExecutor(max_workers=max(1, num_threads), thread_name_prefix="dspyq")
        submissions: dict[Future[tuple[int, Any]], tuple[int, int]] = {}
        resubmitted: set[Future[tuple[int, Any]]] = set()

        def submit(index: int) -> None:
            # Each task runs in a copy of the caller's context: same LM, adapter, trace.
            number = len(submissions)
            submissions[pool.submit(bind_context(task), number, index)] = (number, index)

        try:
            for index in range(len(self.items)):
                submit(index)
            pending = set(submissions)
            while pending and not self.cancelled.is_set() and not self._done():
                done, pending = wait(pending, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
                for future in done:
                    try:
                        index, outcome = future.result()
                    except Exception:  # only a failure outside ``attempt``; nothing to keep
                        continue
                    if outcome is not _SKIPPED and self.results[index] is _UNSET:
                        self.record(index, outcome)
                if self._done() or timeout <= 0 or len(pending) > straggler_limit:
                    continue
                now = time.time()
                for future in [f for f in pending if f not in resubmitted]:
                    number, index = submissions[future]
                    began = started.get(number)
                    if began and now - began >= timeout:
                        resubmitted.add(future)
                        submit(index)
                        pending.add(next(reversed(submissions)))
        finally:
            pool.shutdown(wait=False)  # a straggler's slower copy is not waited for

"""``Parallel`` and ``Module.batch``: run (module, example) pairs on a thread pool, as DSPy does.

Results come back in input order; a failed pair's slot is ``None`` and its exception
is kept apart (``return_failed_examples`` hands both back), as in DSPy. When the number of
failures reaches ``max_errors`` the remaining work is cancelled and a plain
``Exception("Execution cancelled due to errors or interruption.")`` is raised, which is
what DSPy 3.4.1 raises, so ``except Exception`` code written for DSPy behaves the same.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from dspyq.core.context import bind_context, current
from dspyq.core.example import Example

__all__ = ["CANCELLED_MESSAGE", "Parallel", "run_parallel"]

logger = logging.getLogger(__name__)

CANCELLED_MESSAGE = "Execution cancelled due to errors or interruption."
DEFAULT_NUM_THREADS = 8  # DSPy's settings.num_threads
DEFAULT_MAX_ERRORS = 10  # DSPy's settings.max_errors


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
        self.timeout = timeout  # accepted for DSPy's signature; no straggler resubmission
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
) -> tuple[list[Any], list[int], dict[int, Exception]]:
    """``function`` over ``items`` on ``num_threads`` threads, in the caller's configuration.

    Returns the results in order (``None`` for an item that failed or never ran), the
    failed indices in the order they failed, and each failed index's exception.
    """
    results: list[Any] = [None] * len(items)
    failed: list[int] = []
    errors: dict[int, Exception] = {}
    lock = threading.Lock()
    cancelled = threading.Event()
    show_traceback = provide_traceback
    if show_traceback is None:
        show_traceback = bool(current().get("provide_traceback"))

    def run_one(index: int) -> None:
        if cancelled.is_set():
            return
        try:
            results[index] = function(items[index])
        except Exception as exc:
            with lock:
                failed.append(index)
                errors[index] = exc
                if len(failed) >= max_errors:
                    cancelled.set()
            if show_traceback:
                logger.error("Error for %s: %s", items[index], exc, exc_info=exc)
            else:
                logger.error(
                    "Error for %s: %s. Set `provide_traceback=True` for traceback.",
                    items[index],
                    exc,
                )

    if num_threads == 1:  # on the caller's thread, as DSPy's sequential path
        for index in range(len(items)):
            if cancelled.is_set():
                break
            run_one(index)
    else:
        pool = ThreadPoolExecutor(max_workers=max(1, num_threads), thread_name_prefix="dspyq")
        try:
            # Each task runs in a copy of the caller's context: same LM, adapter, trace.
            futures = [pool.submit(bind_context(run_one), i) for i in range(len(items))]
            wait(futures)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    if cancelled.is_set():
        logger.warning(CANCELLED_MESSAGE)
        raise Exception(CANCELLED_MESSAGE)  # DSPy's exact exception, see module docstring
    return results, failed, errors

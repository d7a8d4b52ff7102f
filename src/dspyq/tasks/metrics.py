"""Metrics across the queue: sent as import paths, imported on the worker.

A metric is any module-level function ``metric(example, prediction, trace=None)``. The
client turns it into ``"package.module:function"`` before anything is enqueued, refusing
lambdas, closures and functions of ``__main__`` (a worker could not import them); the
worker imports the path within its allowed prefixes (``DSPYQ_ALLOWED_IMPORTS``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from dspyq.core.imports import import_path_of, resolve_import
from dspyq.errors import ConfigurationError, InputError
from dspyq.optimize.evaluate import numeric_score

Metric = Callable[..., Any]


def metric_path(metric: Metric | str) -> str:
    """The import path a worker resolves ``metric`` by; InputError if it has none.

    A string is taken as an import path already and only checked for its shape.
    """
    if isinstance(metric, str):
        module, _, name = metric.partition(":")
        if not module or not name:
            raise InputError(
                f"Metric path {metric!r} is malformed; expected 'package.module:function'.",
                context={"metric": metric},
            )
        return metric
    if not callable(metric):
        raise InputError(
            f"The metric must be a module-level function, not {type(metric).__name__}.",
            context={"metric": repr(metric)[:80]},
        )
    return import_path_of(metric, "the metric")


def resolve_metric(path: str, allowed_prefixes: Sequence[str] | None = None) -> Metric:
    """The metric function at ``path``, imported within ``allowed_prefixes``.

    ``None`` uses the ``allowed_imports`` setting. Raises ConfigurationError when the path
    is refused, does not import, or names something that is not callable.
    """
    found = resolve_import(path, allowed_prefixes)
    if not callable(found):
        raise ConfigurationError(
            f"Metric {path!r} is a {type(found).__name__}, not a function.",
            context={"metric": path},
        )
    metric: Metric = found
    return metric


def metric_score(value: Any) -> float:
    """A metric's result as a number (see ``numeric_score``); an InputError when it holds
    none, as the worker reports a metric's bad result."""
    number = numeric_score(value)
    if number is not None:
        return number
    raise InputError(
        f"The metric returned {type(value).__name__}; expected a bool, an int, a float, "
        "or an object with a numeric score.",
        context={"type": type(value).__name__},
    )

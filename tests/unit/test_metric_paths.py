"""Metrics cross the queue by import path: which functions have one, and which are refused."""

from __future__ import annotations

from typing import Any

import pytest

from dspyq.errors import ConfigurationError, InputError
from dspyq.metrics import answer_exact_match
from dspyq.tasks.metrics import metric_path, metric_score, resolve_metric


def test_module_level_metric_travels_as_its_import_path() -> None:
    path = metric_path(answer_exact_match)
    assert path == "dspyq.optimize.metrics:answer_exact_match"
    assert resolve_metric(path, allowed_prefixes=[]) is answer_exact_match


def test_metric_of_main_is_refused_naming_the_metric() -> None:
    def metric(example: Any, prediction: Any) -> bool:
        return True

    metric.__module__ = "__main__"
    metric.__qualname__ = "metric"
    with pytest.raises(InputError, match="__main__") as refused:
        metric_path(metric)
    assert refused.value.message.startswith("The metric")


@pytest.mark.parametrize("metric", [lambda e, p: True, 42, "no-colon"])
def test_lambdas_non_callables_and_malformed_paths_are_refused(metric: Any) -> None:
    with pytest.raises(InputError):
        metric_path(metric)


def test_worker_refuses_a_metric_outside_the_allowed_prefixes() -> None:
    with pytest.raises(ConfigurationError, match="allowed imports"):
        resolve_metric("json:dumps", allowed_prefixes=["myapp"])
    with pytest.raises(ConfigurationError, match="not a function"):
        resolve_metric("dspyq.metrics:__all__", allowed_prefixes=[])


def test_metric_values_become_numbers() -> None:
    class Scored:
        score = 0.5

    assert [metric_score(v) for v in (True, 2, 0.25, Scored())] == [1.0, 2.0, 0.25, 0.5]
    with pytest.raises(InputError, match="str"):
        metric_score("yes")

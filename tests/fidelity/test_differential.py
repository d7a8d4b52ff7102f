"""dspyq against DSPy 3.4.1 on generated cases: same prompts, values, errors and warnings.

Each case (signature, demos, inputs, completions; see ``fidelity_cases``) runs in two
long-lived processes, one per library (``fidelity_side``), and the results must be
equal: messages byte for byte, parsed values with their types and key order, the
error class where DSPy raises, the warnings DSPy logs. Hypothesis is derandomized,
so CI runs the same cases every time, and shrinks a failure to a small repro.
``DSPYQ_FIDELITY_CASES`` sets the count; ``bench/fidelity.py`` runs thousands.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from typing import Any

import pytest
from fidelity_cases import cases
from fidelity_harness import Side, describe, differences
from hypothesis import HealthCheck, given, settings

if importlib.util.find_spec("dspy") is None:
    if os.environ.get("CI"):  # the dev extra installs it: missing in CI is a failure
        raise RuntimeError("dspy==3.4.1 is needed for the differential tests")
    pytest.skip("dspy is not installed", allow_module_level=True)

CASES = int(os.environ.get("DSPYQ_FIDELITY_CASES", "300"))


@pytest.fixture(scope="module")
def sides() -> Iterator[tuple[Side, Side]]:
    pair = (Side("dspy"), Side("dspyq"))
    yield pair
    for side in pair:
        side.close()


@settings(
    max_examples=CASES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=cases())
def test_dspyq_matches_dspy(sides: tuple[Side, Side], case: dict[str, Any]) -> None:
    dspy_side, dspyq_side = sides
    found = differences(dspy_side.run(case), dspyq_side.run(case))
    assert not found, describe(found)


def test_the_comparison_sees_each_kind_of_difference() -> None:
    base: dict[str, Any] = {
        "build": {"fields": [], "warnings": []},
        "format": {"messages": [["user", "a"]], "warnings": []},
        "parse": [{"value": ["dict", []], "warnings": []}],
    }
    assert differences(base, base) == []
    other = {**base, "format": {"messages": [["user", "b"]], "warnings": []}}
    assert [d[0] for d in differences(base, other)] == ["format.value"]
    warned = {**base, "format": {"messages": [["user", "a"]], "warnings": ["careful"]}}
    assert [d[0] for d in differences(base, warned)] == ["format.warnings"]
    error = {"error": "ValueError", "bases": ["ValueError", "Exception"], "warnings": []}
    ours = {"error": "SignatureError", "bases": ["SignatureError", "DspyqError"], "warnings": []}
    assert [d[0] for d in differences({**base, "build": error}, {**base, "build": ours})] == [
        "build.error"
    ]
    subclass = {**ours, "bases": ["SignatureError", "ValueError", "Exception"]}
    assert differences({**base, "build": error}, {**base, "build": subclass}) == []

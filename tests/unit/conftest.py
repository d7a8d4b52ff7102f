"""Fixtures for the tests that run the same case through DSPy and dspyq."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest


@pytest.fixture
def fresh_configurations() -> Iterator[None]:
    """DSPy's settings and dspyq's configuration at their defaults before and after."""
    import dspy

    from dspyq.core.context import reset_configuration

    def reset() -> None:
        dspy.configure(lm=None, adapter=None, callbacks=[])
        reset_configuration()

    reset()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    yield
    reset()

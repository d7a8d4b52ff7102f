"""``dspyq.utils``: DSPy's ``dspy.utils`` names (``DummyLM``, ``BaseCallback`` ...)."""

from dspyq.core.callbacks import BaseCallback, with_callbacks
from dspyq.core.sync_async import asyncify, syncify
from dspyq.lm.pretty import pretty_print_history
from dspyq.lm.usage import UsageTracker, track_usage
from dspyq.utils.dummies import DummyLM

__all__ = [
    "BaseCallback",
    "DummyLM",
    "UsageTracker",
    "asyncify",
    "pretty_print_history",
    "syncify",
    "track_usage",
    "with_callbacks",
]

"""Privacy levels of a job: what is redacted before the provider sees it, and what a
completion may not give back.

- ``standard``: inputs, demos and history are sent as they are.
- ``medium``: personal data (:mod:`dspyq.lm.redact`) is redacted from the job's inputs
  before the program runs; demos and history are sent as they are.
- ``high``: also from every message an LM call sends (demos and history included), and
  each completion is checked: one that holds personal data redacted from the inputs,
  or any secret-shaped value (:func:`dspyq.masking.secret_kinds`), fails the job with
  :class:`~dspyq.errors.PrivacyViolationError` and a ``privacy_violation`` event that
  names the kinds found, never the values.

The level of a job is the strictest of the deployment's (``DSPYQ_PRIVACY__LEVEL``), its
pool's (``DSPYQ_PROVIDERS__<P>__PRIVACY_LEVEL``) and its submitter's
(``privacy=`` of ``Client.submit``/``map``/``stream``, or ``dspyq.context(privacy=...)``
around them).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from dspyq.core import observe
from dspyq.errors import InputError, PrivacyViolationError
from dspyq.lm.redact import PII_REDACTED, redact_text
from dspyq.masking import secret_kinds
from dspyq.settings import PrivacyLevel

__all__ = [
    "LEVELS",
    "PRIVACY_VIOLATION",
    "REDACT_MESSAGES_KEY",
    "PrivacyGuard",
    "requested_level",
    "strictest",
]

LEVELS: tuple[PrivacyLevel, ...] = ("standard", "medium", "high")

PRIVACY_VIOLATION = "privacy_violation"
"""Event of a completion that broke the privacy level (data: level, kinds)."""

REDACT_MESSAGES_KEY = "privacy_redact_messages"
"""Runtime configuration key: every message an LM call sends is redacted (level high)."""


def strictest(*levels: PrivacyLevel | None) -> PrivacyLevel:
    """The strictest of ``levels`` (``standard`` when none is set)."""
    given = [LEVELS.index(level) for level in levels if level is not None]
    return LEVELS[max(given, default=0)]


def requested_level(*levels: object) -> PrivacyLevel | None:
    """The strictest of the levels a submitter asked for (None: none asked), each checked
    at the queue's edge: a misspelt level fails the submit, not the job."""
    checked: list[PrivacyLevel] = []
    for level in levels:
        if level is None:
            continue
        if level not in LEVELS:
            raise InputError(
                f"unknown privacy level {level!r}; valid levels: {', '.join(LEVELS)}",
                context={"privacy": str(level), "valid_levels": list(LEVELS)},
            )
        checked.append(level)
    return strictest(*checked) if checked else None


class PrivacyGuard:
    """The privacy level of one job: redacts its inputs and checks its outputs."""

    def __init__(self, level: PrivacyLevel) -> None:
        self.level = level
        self._redacted: dict[str, str] = {}  # value -> kind; never leaves this object

    @property
    def redacts_messages(self) -> bool:
        return self.level == "high"

    def redact_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """``inputs`` with personal data redacted (from ``medium`` on); emits
        ``pii_redacted`` with the counts per kind when something was found."""
        if self.level == "standard":
            return inputs
        counts: Counter[str] = Counter()
        redacted = {name: self._redact(value, counts) for name, value in inputs.items()}
        if counts:
            observe.emit(PII_REDACTED, {"scope": "inputs", "counts": dict(sorted(counts.items()))})
        return redacted

    def _redact(self, value: Any, counts: Counter[str]) -> Any:
        if isinstance(value, str):
            return redact_text(value, counts, values=self._redacted)
        if isinstance(value, dict):
            return {k: self._redact(v, counts) for k, v in value.items()}
        if isinstance(value, list):
            return [self._redact(v, counts) for v in value]
        return value

    def check_outputs(self, outputs: Any) -> None:
        """At ``high``: raise PrivacyViolationError (and emit ``privacy_violation``) if
        ``outputs`` hold a value redacted from the inputs or a secret-shaped value."""
        if self.level != "high":
            return
        kinds: set[str] = set()
        for text in _strings(outputs):
            kinds.update(kind for value, kind in self._redacted.items() if value in text)
            kinds.update(secret_kinds(text))
        if not kinds:
            return
        found = sorted(kinds)
        observe.emit(PRIVACY_VIOLATION, {"level": self.level, "kinds": found})
        raise PrivacyViolationError(
            f"the completion holds what privacy level {self.level!r} protects "
            f"({', '.join(found)}); the job failed instead of returning it",
            context={"kinds": found, "level": self.level},
        )


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []

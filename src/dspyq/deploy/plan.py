"""A deployment as checked before anything is written: what moves where, and the results.

:class:`Deployment` is what ``deploy`` returns and ``deployments`` lists; a
:class:`Plan` is one run's input, validated (InputError, nothing changed) before the
pipeline starts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from dspyq.core.example import Example
from dspyq.errors import InputError
from dspyq.store.models import AliasRecord, DeploymentRecord

__all__ = [
    "STEPS",
    "Deployment",
    "LiveWorkers",
    "Plan",
    "RunSmoke",
    "checked_canary",
    "checked_canary_policy",
    "checked_lm",
    "checked_name",
    "checked_smoke",
]

STEPS = (
    "validate_resources",
    "prepare_modules",
    "configure_services",
    "deploy_infrastructure",
    "verify_deployment",
    "enable_traffic",
)
"""The seed's deployment steps, in the order they run."""

LiveWorkers = Callable[[str], int]
"""How many live workers serve a pool (``"openai"``): Celery inspect, ``Client.pools()``."""

RunSmoke = Callable[[str, Sequence[Any], Any], float | None]
"""Runs smoke examples through the queue: ``(reference "qa:3", examples, metric or None)``
-> the score (as ``client.evaluate`` reports it; None without a metric). Raises when
the examples could not run."""

Action = Literal["deploy", "rollback"]


class Deployment(BaseModel):
    """One deployment of a program version to an alias, as recorded in SQL."""

    model_config = ConfigDict(frozen=True)

    name: str
    alias: str
    version: int
    previous_version: int | None
    correlation_id: str
    steps: list[dict[str, Any]]
    created_at: datetime
    status: str
    action: str
    canary_fraction: float | None = None
    finished_at: datetime | None = None
    error: dict[str, Any] | None = None

    @classmethod
    def from_record(cls, record: DeploymentRecord) -> Deployment:
        return cls(correlation_id=record.id, **record.model_dump(exclude={"id"}))


@dataclass
class Plan:
    """One run of the pipeline: checked input, the alias as read, and each step's result."""

    name: str
    alias: str
    version: int
    spec: dict[str, Any]
    current: AliasRecord | None
    action: Action = "deploy"
    canary: float | None = None
    canary_policy: dict[str, float] = field(default_factory=dict)
    """How the watcher judges the canary (``window_seconds``, ``min_samples``,
    ``max_wait_seconds``), if set."""
    smoke: list[Any] | None = None
    metric: Any = None
    min_score: float | None = None
    lm: str | None = None
    deployment_id: str = ""
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def previous_version(self) -> int | None:
        """The version serving the alias before this deployment (None: a new alias)."""
        if self.current is None:
            return None
        if self.action == "rollback" and self.current.canary_version is not None:
            return self.current.canary_version
        return self.current.version

    @property
    def reference(self) -> str:
        return f"{self.name}:{self.version}"


def checked_canary(canary: object) -> float | None:
    """``canary`` if it is None or a fraction strictly between 0 and 1; InputError if not."""
    if canary is None:
        return None
    if isinstance(canary, bool) or not isinstance(canary, int | float):
        raise InputError(f"canary is a fraction of traffic in (0, 1), not {canary!r:.80}")
    if not (math.isfinite(canary) and 0.0 < canary < 1.0):
        raise InputError(
            f"canary must be strictly between 0 and 1 (e.g. 0.1 for 10% of traffic), not {canary}",
            context={"canary": float(canary) if math.isfinite(canary) else str(canary)},
        )
    return float(canary)


def checked_canary_policy(
    canary: float | None, window: object, min_samples: object, max_wait: object = None
) -> dict[str, float]:
    """The canary's own judging policy; InputError for values that are not positive."""
    policy: dict[str, float] = {}
    given = (
        ("canary_window", "window_seconds", window),
        ("min_samples", "min_samples", min_samples),
        ("canary_max_wait", "max_wait_seconds", max_wait),
    )
    for argument, key, value in given:
        if value is None:
            continue
        if canary is None:
            raise InputError(f"{argument} is given but no canary is deployed (canary=None)")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(f"{argument} is a positive number, not {value!r:.80}")
        if not (math.isfinite(value) and value > 0):
            raise InputError(f"{argument} must be positive, not {value}")
        if key == "min_samples" and not float(value).is_integer():
            raise InputError(f"min_samples is a whole number, not {value}")
        policy[key] = float(value)
    if policy.get("max_wait_seconds", math.inf) < policy.get("window_seconds", 0.0):
        raise InputError(
            f"canary_max_wait ({policy['max_wait_seconds']:g} s) is shorter than the canary's "
            f"window ({policy['window_seconds']:g} s): the canary is judged after its window"
        )
    return policy


def checked_lm(lm: object) -> str | None:
    """``lm`` if it is None or written ``provider/model``; InputError if not (whether
    the provider is configured is the ``validate_resources`` step's question)."""
    if lm is None:
        return None
    if not isinstance(lm, str) or not lm.partition("/")[2].strip() or not lm.split("/")[0]:
        raise InputError(
            f"lm is written 'provider/model' (e.g. 'openai/gpt-4o-mini'), not {lm!r:.80}"
        )
    return lm.strip()


def checked_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"a program name is a non-empty string, not {name!r:.80}")
    return name.strip()


def checked_smoke(
    smoke: Sequence[Any] | None, metric: Any, min_score: object
) -> tuple[list[Any] | None, float | None]:
    """(smoke examples, min score) if they fit together; InputError if not."""
    if smoke is not None and (
        isinstance(smoke, str | bytes | dict) or not hasattr(smoke, "__iter__")
    ):
        raise InputError(f"smoke is a list of examples, not a {type(smoke).__name__}")
    examples = None if smoke is None else list(smoke)
    if examples is not None and not examples:
        raise InputError("smoke examples were given but the list is empty")
    for item in examples or []:
        if not isinstance(item, dict | Example):
            raise InputError(
                f"a smoke example is a dspyq.Example or a dict, not {type(item).__name__}"
            )
    if min_score is not None:
        if isinstance(min_score, bool) or not isinstance(min_score, int | float):
            raise InputError(f"min_score is a number, not {min_score!r:.80}")
        if metric is None or examples is None:
            raise InputError("min_score needs smoke examples and a metric to score them with")
    if metric is not None and examples is None:
        raise InputError("a metric was given without smoke examples to run it on")
    return examples, None if min_score is None else float(min_score)

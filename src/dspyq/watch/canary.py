"""A running canary judged against the version it shares traffic with, on the same window.

The canary is judged once it has run its window (``canary_window``, from the moment
traffic moved) and served at least ``min_samples`` jobs; until then it keeps its share.
The window is the whole time it ran, so a breach must last it, not flare once. Its
figures are compared with the stable version's over that same window:

- p95 above the stable p95 times ``canary_p95_ratio`` (when above ``canary_min_p95_ms``),
  or above the absolute p95 limit;
- LM or execution failure rate above the stable one plus ``canary_failure_rate_margin``;
- mean feedback score below the stable one minus ``canary_score_margin`` (when both
  versions have feedback).

A breach rolls the alias back (``Deployer.abort_canary``: ``dspy_deployment_step_failed``
for ``enable_traffic`` with the figures); no breach promotes it to all the traffic.

A canary that has not served ``min_samples`` jobs ``max_wait`` after its traffic moved
(low traffic, a small share) cannot be judged on evidence and would otherwise hold the
alias for ever (no other deployment may start a canary there). It is then decided
without the evidence: promoted by default, since nothing showed it worse (with at least
``min_samples`` a breach rolls back, otherwise the canary is promoted), or rolled back
when ``watch.canary_undersampled`` is ``"rollback"``; either way with a
``canary_undersampled`` alert naming how many samples it had.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dspyq.settings import WatchSettings
from dspyq.store.models import AliasRecord, DeploymentRecord
from dspyq.watch.windows import VersionStats

__all__ = ["CanaryPolicy", "CanaryVerdict", "breaches", "canary_policy"]


@dataclass(frozen=True)
class CanaryPolicy:
    window_seconds: float
    min_samples: int
    started: datetime
    max_wait_seconds: float
    """How long it may wait for ``min_samples`` (never less than its window)."""


@dataclass
class CanaryVerdict:
    """What the watcher decided about one canary (``action`` None: keep watching)."""

    name: str
    alias: str
    version: int
    stable_version: int
    action: str | None
    reasons: list[str] = field(default_factory=list)
    measured: dict[str, Any] = field(default_factory=dict)


def canary_policy(
    alias: AliasRecord, deployment: DeploymentRecord | None, limits: WatchSettings
) -> CanaryPolicy:
    """The deployment's own window and sample floor (else the settings'), and when
    its traffic moved."""
    own: dict[str, Any] = {}
    started = alias.updated_at
    for step in deployment.steps if deployment is not None else []:
        if step.get("step") == "enable_traffic" and step.get("status") == "complete":
            own = dict((step.get("result") or {}).get("canary_policy") or {})
            if step.get("at"):
                started = datetime.fromisoformat(str(step["at"]))
    window = float(own.get("window_seconds") or limits.canary_window_seconds)
    return CanaryPolicy(
        window_seconds=window,
        min_samples=int(own.get("min_samples") or limits.canary_min_samples),
        started=started,
        max_wait_seconds=max(
            window, float(own.get("max_wait_seconds") or limits.canary_max_wait_seconds)
        ),
    )


def breaches(canary: VersionStats, stable: VersionStats | None, limits: WatchSettings) -> list[str]:
    """Why the canary does worse than the stable version (empty: it does not)."""
    found: list[str] = []
    c_p95 = canary.p95_ms
    s_p95 = stable.p95_ms if stable is not None else None
    if c_p95 is not None:
        if c_p95 > limits.module_execution_p95_ms:
            found.append(
                f"p95 {c_p95:.0f} ms is above the limit {limits.module_execution_p95_ms:.0f} ms"
            )
        elif (
            s_p95 is not None
            and c_p95 > limits.canary_min_p95_ms
            and c_p95 > s_p95 * limits.canary_p95_ratio
        ):
            found.append(
                f"p95 {c_p95:.0f} ms is above {limits.canary_p95_ratio:g}x the stable "
                f"version's {s_p95:.0f} ms"
            )
    margin = limits.canary_failure_rate_margin
    c_lm = canary.lm_failure_rate
    s_lm = (stable.lm_failure_rate if stable is not None else None) or 0.0
    if c_lm is not None and c_lm > s_lm + margin:
        found.append(
            f"LM failure rate {c_lm:.1%} is above the stable version's {s_lm:.1%} + {margin:.1%}"
        )
    c_fail = canary.failures / canary.executions if canary.executions else 0.0
    s_fail = (
        stable.failures / stable.executions if stable is not None and stable.executions else 0.0
    )
    if c_fail > s_fail + margin:
        found.append(
            f"failure rate {c_fail:.1%} is above the stable version's {s_fail:.1%} + {margin:.1%}"
        )
    c_score = canary.mean_score
    s_score = stable.mean_score if stable is not None else None
    if (
        c_score is not None
        and s_score is not None
        and c_score < s_score - limits.canary_score_margin
    ):
        found.append(
            f"mean feedback score {c_score:.3f} is below the stable version's {s_score:.3f} "
            f"- {limits.canary_score_margin:g}"
        )
    return found

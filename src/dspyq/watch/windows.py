"""What one window of time looked like, per program version and pool, read from SQL.

A window is ``[start, end)``. Executions count by when they finished, LM calls by when
they were made (cache hits left out: they never reached a provider), feedback by when
it was given. Percentiles are computed here rather than in SQL, the same way on SQLite
and PostgreSQL; a window holds minutes of traffic, so the rows are few.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, select
from sqlmodel import col

from dspyq.store.engine import read_connection
from dspyq.store.models import ExecutionRecord, FeedbackRecord, LMRequestRecord

__all__ = [
    "VersionKey",
    "VersionStats",
    "Window",
    "aligned_window",
    "by_version",
    "p95",
    "pool_of",
    "window_stats",
]

VersionKey = tuple[str, int, str]
"""(program name, version, pool); ``""`` and ``0`` for jobs that carried their program."""


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def previous(self) -> Window:
        return Window(self.start - (self.end - self.start), self.start)

    def as_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


def aligned_window(now: datetime, seconds: float, step: float) -> Window:
    """The window of ``seconds`` ending at the last multiple of ``step`` before ``now``:
    watchers looking at nearly the same moment judge the very same window."""
    epoch = now.timestamp()
    end = datetime.fromtimestamp(math.floor(epoch / step) * step, tz=now.tzinfo)
    return Window(end - timedelta(seconds=seconds), end)


@dataclass
class VersionStats:
    """One program version on one pool during one window."""

    key: VersionKey
    durations_ms: list[float] = field(default_factory=list)
    failures: int = 0
    lm_requests: int = 0
    lm_failures: int = 0
    scores: list[float] = field(default_factory=list)

    @property
    def executions(self) -> int:
        return len(self.durations_ms)

    @property
    def p95_ms(self) -> float | None:
        return p95(self.durations_ms)

    @property
    def lm_failure_rate(self) -> float | None:
        return self.lm_failures / self.lm_requests if self.lm_requests else None

    @property
    def mean_score(self) -> float | None:
        return sum(self.scores) / len(self.scores) if self.scores else None

    def figures(self) -> dict[str, float | int | None]:
        """The measured figures, as an alert or a canary verdict reports them."""
        return {
            "executions": self.executions,
            "failures": self.failures,
            "p95_ms": self.p95_ms,
            "lm_requests": self.lm_requests,
            "lm_failure_rate": self.lm_failure_rate,
            "feedback": len(self.scores),
            "mean_score": self.mean_score,
        }


def p95(values: list[float]) -> float | None:
    """The 95th percentile by nearest rank (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def pool_of(lm: str | None) -> str:
    """The pool of ``"openai/gpt-4o-mini"``: its provider."""
    prefix, sep, _ = (lm or "").partition("/")
    return prefix.strip().lower() if sep else ""


def window_stats(
    engine: Engine, window: Window, *, since: datetime | None = None
) -> dict[VersionKey, VersionStats]:
    """Every version that finished executions or made LM calls in ``window`` (from
    ``since`` instead of the window's start when later: a canary's own start)."""
    start = max(window.start, since) if since is not None else window.start
    stats: dict[VersionKey, VersionStats] = {}

    def entry(key: VersionKey) -> VersionStats:
        if key not in stats:
            stats[key] = VersionStats(key)
        return stats[key]

    executions = select(
        col(ExecutionRecord.program_name),
        col(ExecutionRecord.program_version),
        col(ExecutionRecord.lm),
        col(ExecutionRecord.status),
        col(ExecutionRecord.duration_ms),
        col(ExecutionRecord.started_at),
        col(ExecutionRecord.finished_at),
    ).where(
        col(ExecutionRecord.finished_at) >= start,
        col(ExecutionRecord.finished_at) < window.end,
        col(ExecutionRecord.status).in_(["succeeded", "failed"]),
    )
    calls = (
        select(
            col(ExecutionRecord.program_name),
            col(ExecutionRecord.program_version),
            col(LMRequestRecord.provider),
            col(LMRequestRecord.model),
            col(LMRequestRecord.status),
        )
        .join(ExecutionRecord, col(ExecutionRecord.task_id) == col(LMRequestRecord.task_id))
        .where(
            col(LMRequestRecord.created_at) >= start,
            col(LMRequestRecord.created_at) < window.end,
            col(LMRequestRecord.cache_hit).is_(False),
        )
    )
    scores = (
        select(
            col(FeedbackRecord.program_name),
            col(FeedbackRecord.program_version),
            col(ExecutionRecord.lm),
            col(FeedbackRecord.score),
        )
        .join(ExecutionRecord, col(ExecutionRecord.task_id) == col(FeedbackRecord.task_id))
        .where(col(FeedbackRecord.created_at) >= start, col(FeedbackRecord.created_at) < window.end)
    )
    with read_connection(engine, "read the watch window") as conn:
        for name, version, lm, status, duration, started, finished in conn.execute(executions):
            row = entry((name or "", int(version or 0), pool_of(lm)))
            if duration is None and started is not None and finished is not None:
                duration = (finished - started).total_seconds() * 1000.0
            row.durations_ms.append(float(duration or 0.0))
            row.failures += status == "failed"
        for name, version, provider, model, status in conn.execute(calls):
            pool = (provider or pool_of(model)).lower()
            row = entry((name or "", int(version or 0), pool))
            row.lm_requests += 1
            row.lm_failures += status == "failed"
        for name, version, lm, score in conn.execute(scores):
            entry((name or "", int(version or 0), pool_of(lm))).scores.append(float(score))
    return stats


def by_version(stats: dict[VersionKey, VersionStats]) -> dict[tuple[str, int], VersionStats]:
    """The same figures summed over pools: what a canary is compared on."""
    merged: dict[tuple[str, int], VersionStats] = defaultdict(lambda: VersionStats(("", 0, "")))
    for (name, version, _pool), row in stats.items():
        total = merged[(name, version)]
        total.key = (name, version, "")
        total.durations_ms += row.durations_ms
        total.failures += row.failures
        total.lm_requests += row.lm_requests
        total.lm_failures += row.lm_failures
        total.scores += row.scores
    return dict(merged)

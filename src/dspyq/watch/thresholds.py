"""The seed's thresholds, judged on one window: which ones were crossed, by how much.

- ``module_execution_p95``: a version's executions' p95 wall time above the limit (ms);
- ``lm_request_failure_rate``: the share of its LM calls that failed above the limit;
- ``optimization_stagnation``: a running optimization scored that many candidates
  without beating its best;
- ``traffic_stopped`` (off by default): an alias whose versions served jobs in the
  previous window and none in this one.

A version needs ``min_samples`` executions (LM calls) in the window before its p95
(failure rate) is judged: one slow job is not a trend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select
from sqlmodel import col

from dspyq.settings import WatchSettings
from dspyq.store.engine import read_connection
from dspyq.store.models import AliasRecord, OptimizationRunRecord
from dspyq.watch.windows import VersionKey, VersionStats, pool_of

__all__ = [
    "LM_FAILURE_RATE",
    "OPTIMIZATION_STAGNATION",
    "P95",
    "TRAFFIC_STOPPED",
    "Crossing",
    "crossed_thresholds",
    "stagnant_runs",
    "stopped_aliases",
]

P95 = "module_execution_p95"
LM_FAILURE_RATE = "lm_request_failure_rate"
OPTIMIZATION_STAGNATION = "optimization_stagnation"
TRAFFIC_STOPPED = "traffic_stopped"


@dataclass(frozen=True)
class Crossing:
    """One threshold crossed by one version (or run, or alias) on one pool."""

    kind: str
    observed: float
    threshold: float
    key: VersionKey
    details: dict[str, Any] = field(default_factory=dict)


def crossed_thresholds(
    stats: dict[VersionKey, VersionStats], limits: WatchSettings
) -> list[Crossing]:
    """The p95 and LM failure-rate crossings of every version in the window."""
    found: list[Crossing] = []
    for key, row in sorted(stats.items()):
        figures = row.figures()
        p95_ms = row.p95_ms
        if (
            row.executions >= limits.min_samples
            and p95_ms is not None
            and p95_ms > limits.module_execution_p95_ms
        ):
            found.append(Crossing(P95, p95_ms, limits.module_execution_p95_ms, key, figures))
        rate = row.lm_failure_rate
        if (
            row.lm_requests >= limits.min_samples
            and rate is not None
            and rate > limits.lm_request_failure_rate
        ):
            found.append(
                Crossing(LM_FAILURE_RATE, rate, limits.lm_request_failure_rate, key, figures)
            )
    return found


def stagnant_runs(engine: Engine, limits: WatchSettings) -> list[Crossing]:
    """Running optimizations whose last ``optimization_stagnation`` candidates (or more)
    did not beat the best before them."""
    query = select(OptimizationRunRecord).where(col(OptimizationRunRecord.status) == "running")
    with read_connection(engine, "read running optimizations") as conn:
        runs = [
            OptimizationRunRecord.model_validate(dict(r)) for r in conn.execute(query).mappings()
        ]
    found = []
    for run in runs:
        since = _since_best(run)
        if since >= limits.optimization_stagnation:
            name = str((run.config or {}).get("run_name") or f"run-{run.id}")
            key = (name, 0, pool_of(run.lm))
            detail = {"run_id": run.id, "optimizer": run.optimizer, "best_score": run.best_score}
            found.append(
                Crossing(
                    OPTIMIZATION_STAGNATION, since, limits.optimization_stagnation, key, detail
                )
            )
    return found


def _since_best(run: OptimizationRunRecord) -> int:
    candidates = (run.checkpoint or {}).get("candidates") or []
    scores = [c.get("score") for c in sorted(candidates, key=lambda c: int(c.get("iteration", 0)))]
    best: float | None = None
    since = 0
    for score in scores:
        if isinstance(score, int | float) and (best is None or score > best):
            best, since = float(score), 0
        else:
            since += 1
    return since


def stopped_aliases(
    engine: Engine,
    current: dict[VersionKey, VersionStats],
    previous: dict[VersionKey, VersionStats],
) -> list[Crossing]:
    """Aliases whose versions served jobs in the previous window and none in this one."""
    with read_connection(engine, "read aliases") as conn:
        aliases = [
            AliasRecord.model_validate(dict(r))
            for r in conn.execute(select(AliasRecord)).mappings()
        ]

    def served(stats: dict[VersionKey, VersionStats], alias: AliasRecord) -> dict[str, int]:
        versions = {alias.version, alias.canary_version}
        pools: dict[str, int] = {}
        for (name, version, pool), row in stats.items():
            if name == alias.name and version in versions and row.executions:
                pools[pool] = pools.get(pool, 0) + row.executions
        return pools

    found = []
    for alias in aliases:
        before, now = served(previous, alias), served(current, alias)
        for pool, count in sorted(before.items()):
            if not now.get(pool):
                detail = {"alias": alias.alias, "previous_executions": count}
                found.append(
                    Crossing(TRAFFIC_STOPPED, 0, 1, (alias.name, alias.version, pool), detail)
                )
    return found

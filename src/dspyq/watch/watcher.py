"""The seed's PerformanceWatcher: looks at sliding windows, raises alerts, judges canaries.

Every ``interval_seconds`` the leading watcher (:class:`~dspyq.watch.leader.LeaderLock`)
reads the window of ``window_seconds`` ending at that moment (aligned, so watchers agree
on it), per program version and pool, from SQL. Each threshold crossed becomes an
``alerts`` row and a ``performance_degradation_detected`` event, once: a crossing whose
previous alert's window still overlaps this one is the same degradation, not a new one.
Running canaries are judged on the same figures (:mod:`dspyq.watch.canary`).

The thresholds are read at every look from the settings plus the live overrides in
Redis, so ``dspyq config set watch.module_execution_p95_ms 3000`` applies at the next look.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from dspyq.deploy import AliasAnnouncer, Deployer
from dspyq.errors import DspyqError
from dspyq.events import Event
from dspyq.settings import Settings
from dspyq.settings_live import with_overrides
from dspyq.store.alerts import AlertStore
from dspyq.store.aliases import AliasStore
from dspyq.store.deployments import DeploymentStore
from dspyq.store.events import EventStore
from dspyq.store.models import AlertRecord
from dspyq.watch.canary import CanaryVerdict, breaches, canary_policy
from dspyq.watch.leader import LeaderLock
from dspyq.watch.thresholds import (
    Crossing,
    crossed_thresholds,
    stagnant_runs,
    stopped_aliases,
)
from dspyq.watch.windows import Window, aligned_window, by_version, window_stats
from dspyq.workers.live_config import LiveConfigStore

if TYPE_CHECKING:
    from redis import Redis

    from dspyq.telemetry.metrics import WorkerMetrics

__all__ = [
    "CANARY_ROLLBACK",
    "CANARY_UNDERSAMPLED",
    "PERFORMANCE_DEGRADATION",
    "WatchReport",
    "Watcher",
]

logger = logging.getLogger(__name__)

PERFORMANCE_DEGRADATION = "performance_degradation_detected"
CANARY_ROLLBACK = "canary_rollback"
"""The alert kind of a canary the watcher rolled back."""
CANARY_UNDERSAMPLED = "canary_undersampled"
"""The alert kind of a canary decided without its ``min_samples`` (see watch.canary)."""

OnAlert = Callable[[AlertRecord], None]


@dataclass
class WatchReport:
    """What one look found: whether this watcher led, the alerts it raised, its verdicts."""

    window: Window
    leader: bool
    alerts: list[AlertRecord] = field(default_factory=list)
    canaries: list[CanaryVerdict] = field(default_factory=list)


class Watcher:
    """Judges windows over ``engine``'s executions; leads through ``redis``."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        redis: Redis,
        *,
        metrics: WorkerMetrics | None = None,
        on_alert: OnAlert | None = None,
    ) -> None:
        self.base = settings
        self.engine = engine
        self.redis = redis
        self.alerts = AlertStore(engine)
        self.events = EventStore(engine)
        self.aliases = AliasStore(engine)
        self.deployments = DeploymentStore(engine)
        self.live = LiveConfigStore(redis, settings.key_prefix)
        self.lock = LeaderLock(redis, settings.key_prefix, settings.watch.leader_ttl_seconds)
        announcer = AliasAnnouncer(redis, settings.key_prefix)
        # Promotion and rollback never ask for live workers: only new deployments do.
        self.deployer = Deployer(engine, announcer, settings, live_workers=lambda pool: 1)
        self.metrics = metrics
        self.on_alert = on_alert

    def settings(self) -> Settings:
        """The settings with the live overrides applied (the base alone if Redis fails)."""
        try:
            overrides = self.live.overrides()
        except DspyqError:
            logger.warning(
                "could not read live overrides; using the started settings", exc_info=True
            )
            return self.base
        return with_overrides(self.base, overrides) if overrides else self.base

    def look(self, now: datetime | None = None) -> WatchReport:
        """Judge the window ending now (if this watcher leads) and every running canary."""
        settings = self.settings()
        limits = settings.watch
        self.lock.ttl = limits.leader_ttl_seconds
        moment = now or datetime.now(UTC)
        window = aligned_window(moment, limits.window_seconds, limits.interval_seconds)
        report = WatchReport(window=window, leader=self.lock.acquire())
        if not report.leader:
            return report
        current = window_stats(self.engine, window)
        crossings = crossed_thresholds(current, limits) + stagnant_runs(self.engine, limits)
        if limits.traffic_stopped:
            previous = window_stats(self.engine, window.previous())
            crossings += stopped_aliases(self.engine, current, previous)
        for crossing in crossings:
            alert = self._raise(crossing, window)
            if alert is not None:
                report.alerts.append(alert)
        report.canaries = self._judge_canaries(settings, moment, report)
        return report

    def run(self, stop: threading.Event) -> None:
        """Look every ``interval_seconds`` until ``stop`` is set; a failed look is logged."""
        try:
            while not stop.is_set():
                try:
                    report = self.look()
                    for alert in report.alerts:
                        logger.warning(
                            "alert %s on %s:%s (%s): %s > %s",
                            alert.kind,
                            alert.program_name,
                            alert.program_version,
                            alert.pool,
                            alert.observed,
                            alert.threshold,
                        )
                except DspyqError:
                    logger.exception("the watcher's look failed; trying again")
                stop.wait(self.settings().watch.interval_seconds)
        finally:
            try:
                self.lock.release()
            except DspyqError:
                logger.warning("could not release the leader lock", exc_info=True)

    # --- alerts --------------------------------------------------------------------------

    def _raise(self, crossing: Crossing, window: Window) -> AlertRecord | None:
        name, version, pool = crossing.key
        last = self.alerts.latest(crossing.kind, name, version, pool)
        if last is not None and last.window_end > window.start:
            return None  # the same degradation, still inside the window it was raised for
        alert = AlertRecord(
            kind=crossing.kind,
            observed=float(crossing.observed),
            threshold=float(crossing.threshold),
            window_start=window.start,
            window_end=window.end,
            program_name=name,
            program_version=version,
            pool=pool,
            details=dict(crossing.details),
        )
        if not self.alerts.record(alert):
            return None
        self.events.append(
            Event(
                event_id=f"alert:{alert.id}",
                event_type=PERFORMANCE_DEGRADATION,
                correlation_id=f"alert-{alert.id}",
                data={
                    "alert_id": alert.id,
                    "threshold": alert.kind,
                    "limit": alert.threshold,
                    "observed": alert.observed,
                    "window_start": window.start.isoformat(),
                    "window_end": window.end.isoformat(),
                    "program_name": name,
                    "version": version,
                    "pool": pool,
                    "details": alert.details,
                },
            )
        )
        if self.metrics is not None:
            self.metrics.record_alert(alert)
        if self.on_alert is not None:
            try:
                self.on_alert(alert)
            except Exception:  # a user's hook must not stop the watcher
                logger.exception("the alert hook failed for alert %s", alert.id)
        return alert

    # --- canaries ------------------------------------------------------------------------

    def _judge_canaries(
        self, settings: Settings, now: datetime, report: WatchReport
    ) -> list[CanaryVerdict]:
        verdicts = []
        for alias in self.aliases.list():
            if alias.canary_version is None or alias.deployment_id is None:
                continue
            deployment = self.deployments.get(alias.deployment_id)
            policy = canary_policy(alias, deployment, settings.watch)
            verdict = CanaryVerdict(
                name=alias.name,
                alias=alias.alias,
                version=alias.canary_version,
                stable_version=alias.version,
                action=None,
            )
            verdicts.append(verdict)
            if now - policy.started < timedelta(seconds=policy.window_seconds):
                continue
            window = Window(policy.started, now)
            stats = by_version(window_stats(self.engine, window))
            canary = stats.get((alias.name, alias.canary_version))
            stable = stats.get((alias.name, alias.version))
            executions = 0 if canary is None else canary.executions
            verdict.measured = {
                "window": window.as_dict(),
                "min_samples": policy.min_samples,
                "canary": None if canary is None else canary.figures(),
                "stable": None if stable is None else stable.figures(),
            }
            if executions >= policy.min_samples:
                assert canary is not None
                verdict.reasons = breaches(canary, stable, settings.watch)
                self._finish(verdict, window, report)
            elif now - policy.started >= timedelta(seconds=policy.max_wait_seconds):
                verdict.measured["max_wait_seconds"] = policy.max_wait_seconds
                self._finish_undersampled(verdict, executions, settings, window, report)
        return verdicts

    def _finish(self, verdict: CanaryVerdict, window: Window, report: WatchReport) -> None:
        try:
            if not verdict.reasons:
                self.deployer.promote(verdict.name, verdict.alias)
                verdict.action = "promoted"
                return
            reason = "the canary did worse than the stable version: " + "; ".join(verdict.reasons)
            self.deployer.abort_canary(verdict.name, verdict.alias, reason, verdict.measured)
            verdict.action = "rolled_back"
        except DspyqError:
            logger.exception("could not finish the canary of %s@%s", verdict.name, verdict.alias)
            return
        canary: dict[str, Any] = verdict.measured.get("canary") or {}
        self._alert_canary(
            verdict,
            CANARY_ROLLBACK,
            float(len(verdict.reasons)),
            0.0,
            window,
            report,
            p95_ms=canary.get("p95_ms"),
        )

    def _finish_undersampled(
        self,
        verdict: CanaryVerdict,
        executions: int,
        settings: Settings,
        window: Window,
        report: WatchReport,
    ) -> None:
        """Decide a canary that waited ``max_wait`` for its samples without them."""
        measured = verdict.measured
        verdict.reasons = [
            f"only {executions} of the {measured['min_samples']} canary executions needed "
            f"to judge it within {measured['max_wait_seconds']:g} s"
        ]
        detail = {"undersampled": True, "reason": verdict.reasons[0], "measured": measured}
        try:
            if settings.watch.canary_undersampled == "promote":
                self.deployer.promote(verdict.name, verdict.alias, detail)
                verdict.action = "promoted"
            else:
                reason = "the canary could not be judged: " + verdict.reasons[0]
                self.deployer.abort_canary(verdict.name, verdict.alias, reason, measured)
                verdict.action = "rolled_back"
        except DspyqError:
            logger.exception("could not finish the canary of %s@%s", verdict.name, verdict.alias)
            return
        threshold = float(measured["min_samples"])
        self._alert_canary(
            verdict,
            CANARY_UNDERSAMPLED,
            float(executions),
            threshold,
            window,
            report,
            action=verdict.action,
        )

    def _alert_canary(
        self,
        verdict: CanaryVerdict,
        kind: str,
        observed: float,
        threshold: float,
        window: Window,
        report: WatchReport,
        **extra: Any,
    ) -> None:
        details = {"alias": verdict.alias, "reasons": verdict.reasons, **verdict.measured, **extra}
        crossing = Crossing(kind, observed, threshold, (verdict.name, verdict.version, ""), details)
        alert = self._raise(crossing, window)
        if alert is not None:
            report.alerts.append(alert)

"""The deployment pipeline: deploy a saved version to an alias, roll back, finish a canary.

``deploy`` checks its input first (InputError listing the saved versions; nothing is
written), then records a ``deployments`` row and runs the seed's steps in order, each
recorded as an event under the deployment's correlation id
(``dspy_deployment_started``, ``dspy_deployment_step_complete`` per step). A failing
step records ``dspy_deployment_step_failed`` and raises :class:`DeploymentError`
naming the step; the alias stays where it was. ``enable_traffic`` moves the alias by
compare-and-set on the revision read at the start, then announces the move. With
``canary=f`` the new version takes a share ``f`` of the jobs; :meth:`Deployer.promote`
or :meth:`Deployer.abort_canary` finishes it later (the watcher's verdict).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine

from dspyq.deploy.announce import AliasAnnouncer
from dspyq.deploy.plan import (
    STEPS,
    Deployment,
    LiveWorkers,
    Plan,
    RunSmoke,
    checked_canary,
    checked_canary_policy,
    checked_lm,
    checked_name,
    checked_smoke,
)
from dspyq.deploy.record import DeploymentLog, canary_step, step_entry
from dspyq.deploy.steps import PipelineSteps
from dspyq.errors import DeploymentError, DspyqError, InputError, new_correlation_id
from dspyq.program_ref import check_alias
from dspyq.settings import Settings
from dspyq.store.aliases import AliasMove, AliasStore
from dspyq.store.models import AliasRecord
from dspyq.store.resolve import ProgramResolver

__all__ = ["Deployer"]

logger = logging.getLogger(__name__)


class Deployer:
    """Deployments of saved programs through ``engine`` (SQL) and ``announcer`` (Redis).

    ``live_workers(pool)`` counts the live workers of a pool; ``run_smoke`` runs smoke
    examples through the queue (both are given by the client, which knows Celery).
    """

    def __init__(
        self,
        engine: Engine,
        announcer: AliasAnnouncer,
        settings: Settings,
        *,
        live_workers: LiveWorkers,
        run_smoke: RunSmoke | None = None,
    ) -> None:
        self.resolver = ProgramResolver(engine)
        self.aliases = AliasStore(engine)
        self.log = DeploymentLog(engine)
        self.announcer = announcer
        self.steps = PipelineSteps(engine, settings, announcer, live_workers, run_smoke)

    def deploy(
        self,
        name: str,
        version: int | None = None,
        *,
        alias: str = "production",
        smoke: Sequence[Any] | None = None,
        metric: Any = None,
        min_score: float | None = None,
        canary: float | None = None,
        lm: str | None = None,
        canary_window: float | None = None,
        min_samples: int | None = None,
        canary_max_wait: float | None = None,
    ) -> Deployment:
        """Deploy ``name`` version ``version`` (the latest when None) to ``alias``.

        A canary is judged by the watcher after ``canary_window`` seconds once it served
        ``min_samples`` jobs (defaults: ``watch.canary_window_seconds`` / ``_min_samples``);
        one still short of them after ``canary_max_wait`` seconds is decided without them
        (``watch.canary_undersampled``)."""
        name, alias = checked_name(name), check_alias(alias)
        fraction = checked_canary(canary)
        policy = checked_canary_policy(fraction, canary_window, min_samples, canary_max_wait)
        examples, floor = checked_smoke(smoke, metric, min_score)
        lm = checked_lm(lm)
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise InputError(f"a version is a whole number, not {version!r:.80}")
        record = self.resolver.record(name, version)
        current = self.aliases.get(name, alias)
        if fraction is not None:
            _check_canary_possible(current, name, alias)
        plan = Plan(
            name=name,
            alias=alias,
            version=record.version,
            spec=record.spec,
            current=current,
            canary=fraction,
            canary_policy=policy,
            smoke=examples,
            metric=metric,
            min_score=floor,
            lm=lm,
        )
        return self._run(plan)

    def rollback(self, name: str, alias: str = "production") -> Deployment:
        """Move ``alias`` back: off a running canary, else to the version it had before
        its current one was deployed (again and again walks further back)."""
        name, alias = checked_name(name), check_alias(alias)
        current = self.resolver.target(name, alias)
        target = current.version
        if current.canary_version is None:
            target = self._version_before(name, alias, current.version)
        record = self.resolver.record(name, target)
        deployment = self._run(
            Plan(
                name=name,
                alias=alias,
                version=target,
                spec=record.spec,
                current=current,
                action="rollback",
            )
        )
        if current.canary_version is not None and current.deployment_id:
            detail = {"reason": f"rolled back by deployment {deployment.correlation_id}"}
            self.log.canary_finished(current.deployment_id, False, detail, stored=False)
        return deployment

    def promote(
        self, name: str, alias: str = "production", detail: dict[str, Any] | None = None
    ) -> Deployment:
        """Give the running canary all the traffic; the canary's deployment succeeds
        (``detail``: what the watcher saw, recorded with the step)."""
        current = self._canary_of(name, alias)
        move = AliasMove(
            version=int(current.canary_version or 0), deployment_id=str(current.deployment_id)
        )
        done = {"promoted": True, **(detail or {})}
        return self._finish_canary(name, alias, current, move, True, done)

    def abort_canary(
        self, name: str, alias: str, reason: str, measured: dict[str, Any] | None = None
    ) -> Deployment:
        """Take the running canary's traffic back (the watcher saw it breach); its
        deployment fails at ``enable_traffic`` with ``reason`` and the measured figures."""
        current = self._canary_of(name, alias)
        move = AliasMove(version=current.version, deployment_id=str(current.deployment_id))
        detail = {"reason": reason, "measured": dict(measured or {})}
        return self._finish_canary(name, alias, current, move, False, detail)

    def history(self, name: str, alias: str | None = None) -> list[Deployment]:
        """The deployments of ``name`` (to one alias), newest first."""
        return [Deployment.from_record(r) for r in self.log.store.history(name, alias)]

    # --- the pipeline ----------------------------------------------------------------

    def _run(self, plan: Plan) -> Deployment:
        plan.deployment_id = new_correlation_id()
        self.log.started(plan)
        runs: list[tuple[str, Callable[[Plan], dict[str, Any]]]] = [
            ("validate_resources", self.steps.validate_resources),
            ("prepare_modules", self.steps.prepare_modules),
            ("configure_services", self.steps.configure_services),
            ("deploy_infrastructure", self.steps.deploy_infrastructure),
            ("verify_deployment", self.steps.verify_deployment),
            ("enable_traffic", self._enable_traffic),
        ]
        assert tuple(step for step, _ in runs) == STEPS
        for step, run in runs:
            try:
                plan.results[step] = run(plan)
            except Exception as exc:  # a user's smoke runner or metric may raise anything
                raise self.log.failed(plan, step, exc) from exc
            if step != "enable_traffic":  # the move recorded its own step
                self.log.step_complete(plan, step, plan.results[step])
        return self.log.deployment(plan.deployment_id)

    def _enable_traffic(self, plan: Plan) -> dict[str, Any]:
        canary_version = plan.version if plan.canary is not None else None
        stable = plan.version
        if canary_version is not None and plan.current is not None:
            stable = plan.current.version
        result: dict[str, Any] = {
            "version": stable,
            "canary_version": canary_version,
            "canary_fraction": plan.canary,
        }
        if canary_version is not None:
            result["canary_policy"] = plan.canary_policy
        move = AliasMove(
            version=stable,
            deployment_id=plan.deployment_id,
            canary_version=canary_version,
            canary_fraction=plan.canary,
            status="succeeded" if canary_version is None else "canary",
            step=step_entry("enable_traffic", "complete", result=result),
        )
        expected = None if plan.current is None else plan.current.revision
        moved = self.aliases.move(plan.name, plan.alias, move, expected_revision=expected)
        if moved is None:
            raise DeploymentError(
                f"{plan.name}@{plan.alias} was moved by another deployment meanwhile",
                context={"reason": "conflict"},
            )
        self.log.step_complete(plan, "enable_traffic", result, stored=True)
        self._announce(moved)
        return {**result, "revision": moved.revision}

    def _announce(self, moved: AliasRecord) -> None:
        # The move is committed: a lost announcement is caught up by the subscribers'
        # periodic re-read of the alias rows, so it does not fail the deployment.
        try:
            self.announcer.moved(moved)
        except DspyqError:
            logger.warning(
                "could not announce the move of %s@%s", moved.name, moved.alias, exc_info=True
            )

    def _finish_canary(
        self,
        name: str,
        alias: str,
        current: AliasRecord,
        move: AliasMove,
        promoted: bool,
        detail: dict[str, Any],
    ) -> Deployment:
        finished = AliasMove(
            version=move.version,
            deployment_id=move.deployment_id,
            status="succeeded" if promoted else "failed",
            step=canary_step(promoted, detail),
        )
        moved = self.aliases.move(name, alias, finished, expected_revision=current.revision)
        if moved is None:
            raise DeploymentError(
                f"{name}@{alias} was moved by another deployment meanwhile; the canary "
                "was neither promoted nor rolled back",
                context={"reason": "conflict", "step": "enable_traffic"},
            )
        self.log.canary_finished(move.deployment_id, promoted, detail)
        self._announce(moved)
        return self.log.deployment(move.deployment_id)

    def _canary_of(self, name: str, alias: str) -> AliasRecord:
        current = self.resolver.target(checked_name(name), check_alias(alias))
        if current.canary_version is None or current.deployment_id is None:
            raise InputError(
                f"{name}@{alias} runs no canary (it serves version {current.version})",
                context={"name": name, "alias": alias},
            )
        return current

    def _version_before(self, name: str, alias: str, version: int) -> int:
        for past in self.log.store.history(name, alias, status="succeeded"):
            if past.version == version and past.action != "rollback":
                if past.previous_version is not None:
                    return past.previous_version
                break
        raise InputError(
            f"{name}@{alias} serves version {version} and has no earlier version to roll "
            f"back to (saved versions: {self.resolver.versions(name)})",
            context={"name": name, "alias": alias, "version": version},
        )


def _check_canary_possible(current: AliasRecord | None, name: str, alias: str) -> None:
    if current is None:
        raise InputError(
            f"{name}@{alias} serves no version yet, so a canary has nothing to share "
            "traffic with: deploy without canary first",
            context={"name": name, "alias": alias},
        )
    if current.canary_version is not None:
        raise InputError(
            f"{name}@{alias} already runs a canary of version {current.canary_version}: "
            "promote it or roll it back first",
            context={"name": name, "alias": alias, "canary_version": current.canary_version},
        )

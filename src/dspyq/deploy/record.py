"""How a deployment is recorded: its ``deployments`` row and its events, kept in step.

Event ids derive from the deployment id and the step (``<id>:<step>:complete``), so a
record written twice is stored once. Event types are the seed's:
``dspy_deployment_started``, ``dspy_deployment_step_complete`` and
``dspy_deployment_step_failed``, all under the deployment's correlation id.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from dspyq.deploy.plan import Deployment, Plan
from dspyq.errors import DeploymentError, DspyqError
from dspyq.events import Event
from dspyq.store.columns import utcnow
from dspyq.store.deployments import DeploymentStore
from dspyq.store.events import EventStore
from dspyq.store.models import DeploymentRecord

__all__ = ["DEPLOYMENT_EVENTS", "DeploymentLog", "canary_step", "step_entry"]

STARTED = "dspy_deployment_started"
STEP_COMPLETE = "dspy_deployment_step_complete"
STEP_FAILED = "dspy_deployment_step_failed"
DEPLOYMENT_EVENTS = (STARTED, STEP_COMPLETE, STEP_FAILED)


def step_entry(step: str, status: str, **detail: Any) -> dict[str, Any]:
    """One element of a deployment's ``steps``: the step, how it ended, when, and detail."""
    return {"step": step, "status": status, "at": utcnow().isoformat(), **detail}


def canary_step(promoted: bool, detail: dict[str, Any]) -> dict[str, Any]:
    """The ``enable_traffic`` entry ending a canary: promoted, or taken back."""
    if promoted:
        return step_entry("enable_traffic", "complete", result=detail)
    return step_entry("enable_traffic", "failed", error=detail)


class DeploymentLog:
    """Writes a deployment's row and events through ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self.store = DeploymentStore(engine)
        self.events = EventStore(engine)

    def started(self, plan: Plan) -> None:
        record = DeploymentRecord(
            id=plan.deployment_id,
            name=plan.name,
            alias=plan.alias,
            action=plan.action,
            version=plan.version,
            previous_version=plan.previous_version,
            canary_fraction=plan.canary,
            created_at=utcnow(),
        )
        self.store.start(record)
        shown = record.model_dump(
            include={"name", "alias", "version", "previous_version", "action"}
        )
        self._emit(plan.deployment_id, "started", STARTED, canary=plan.canary, **shown)

    def step_complete(
        self, plan: Plan, step: str, result: dict[str, Any], *, stored: bool = False
    ) -> None:
        """Record a step that ended well (``stored``: its entry was written with the move)."""
        if not stored:
            self.store.add_step(plan.deployment_id, step_entry(step, "complete", result=result))
        self._emit(plan.deployment_id, f"{step}:complete", STEP_COMPLETE, step=step, result=result)

    def failed(self, plan: Plan, step: str, exc: Exception) -> DeploymentError:
        """Record ``step`` failing with ``exc``; returns the error to raise."""
        error = exc.to_dict() if isinstance(exc, DspyqError) else _foreign(exc)
        reason = str(error.get("message") or type(exc).__name__)
        self.store.finish(
            plan.deployment_id,
            "failed",
            step=step_entry(step, "failed", error=error),
            error=error,
        )
        self._emit(
            plan.deployment_id,
            f"{step}:failed",
            STEP_FAILED,
            step=step,
            error=reason,
            error_type=error["type"],
        )
        return DeploymentError(
            f"deploying {plan.reference} to {plan.name}@{plan.alias} failed at {step}: {reason}",
            correlation_id=plan.deployment_id,
            context={
                "step": step,
                "reason": reason,
                "deployment_id": plan.deployment_id,
                "name": plan.name,
                "alias": plan.alias,
                "version": plan.version,
            },
        )

    def canary_finished(
        self, deployment_id: str, promoted: bool, detail: dict[str, Any], *, stored: bool = True
    ) -> None:
        """Record the end of a canary: promoted (step complete) or taken back (failed).

        ``stored``: the deployment row was ended with the alias move already."""
        if not stored:
            status = "succeeded" if promoted else "failed"
            self.store.finish(deployment_id, status, step=canary_step(promoted, detail))
        suffix = "enable_traffic:" + ("promoted" if promoted else "aborted")
        event_type = STEP_COMPLETE if promoted else STEP_FAILED
        key = "result" if promoted else "error"
        self._emit(deployment_id, suffix, event_type, step="enable_traffic", **{key: detail})

    def deployment(self, deployment_id: str) -> Deployment:
        record = self.store.get(deployment_id)
        if record is None:
            raise DeploymentError(f"deployment {deployment_id} is not recorded")
        return Deployment.from_record(record)

    def _emit(self, deployment_id: str, suffix: str, event_type: str, **data: Any) -> None:
        self.events.append(
            Event(
                event_id=f"{deployment_id}:{suffix}",
                event_type=event_type,
                correlation_id=deployment_id,
                data={"deployment_id": deployment_id, **data},
            )
        )


def _foreign(exc: Exception) -> dict[str, Any]:
    return {"type": type(exc).__name__, "message": str(exc) or type(exc).__name__}

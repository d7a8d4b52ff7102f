"""The client's methods for the production loop: deploy, roll back, read the history,
give feedback, trace lineage, read alerts and improve.

:class:`Client` inherits them; the work is in :mod:`dspyq.api_client.deployments` and
:mod:`dspyq.api_client.improve`, imported when a method is first called, so a client
that only submits jobs never loads the deployment machinery.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.engine import Engine

    from dspyq.api_client.client import Client
    from dspyq.api_client.improve import Improvement
    from dspyq.deploy.plan import Deployment
    from dspyq.optimize.teleprompter import Teleprompter
    from dspyq.store.models import AlertRecord, FeedbackRecord, LineageRecord
    from dspyq.tasks.metrics import Metric

__all__ = ["ProductionLoopMethods"]


class ProductionLoopMethods:
    """The production loop's methods, mixed into :class:`~dspyq.api_client.client.Client`."""

    if TYPE_CHECKING:

        @property
        def engine(self) -> Engine: ...

    def deploy(
        self,
        name: str,
        version: int | None = None,
        *,
        alias: str = "production",
        smoke: Sequence[Any] | None = None,
        metric: Metric | str | None = None,
        min_score: float | None = None,
        canary: float | None = None,
        lm: str | None = None,
        **canary_policy: float | None,
    ) -> Deployment:
        """Point ``name@alias`` at ``version`` (the latest when None) through the deployment
        pipeline; running workers serve it within a second. ``smoke`` examples run on the
        queue first (with ``metric``, their score must reach ``min_score``, a percentage);
        ``canary=0.1`` sends 10% of the alias's jobs to the new version first, judged by
        ``dspyq watch`` (``canary_window=``, ``min_samples=``, ``canary_max_wait=``).
        ``lm``: the model of a version saved without one."""
        from dspyq.api_client.deployments import deploy
        from dspyq.api_client.validation import check_options

        check_options(canary_policy, ("canary_window", "min_samples", "canary_max_wait"), "deploy")
        client: Client = self  # type: ignore[assignment]
        return deploy(
            client,
            name,
            version,
            alias=alias,
            smoke=smoke,
            metric=metric,
            min_score=min_score,
            canary=canary,
            lm=lm,
            **canary_policy,
        )

    def rollback(self, name: str, alias: str = "production") -> Deployment:
        """Move ``name@alias`` back to the version it served before (off a running canary)."""
        from dspyq.api_client.deployments import rollback

        client: Client = self  # type: ignore[assignment]
        return rollback(client, name, alias)

    def deployments(self, name: str | None = None, alias: str | None = None) -> list[Deployment]:
        """The deployments and rollbacks of ``name``'s aliases (of every program's when
        None; of one alias), newest first."""
        from dspyq.api_client.deployments import deployments

        return deployments(self.engine, name, alias)

    def feedback(
        self, job_id: str, score: float, label: str | None = None, comment: str | None = None
    ) -> FeedbackRecord:
        """Store a score for a job's answer, tied to the program version that served it."""
        from dspyq.api_client.deployments import feedback

        return feedback(self.engine, job_id, score, label=label, comment=comment)

    def lineage(self, name: str, version: int) -> list[LineageRecord]:
        """Where ``name`` version ``version`` came from, back to its first ancestor."""
        from dspyq.api_client.deployments import lineage

        return lineage(self.engine, name, version)

    def alerts(self, since: datetime | None = None) -> list[AlertRecord]:
        """The alerts ``dspyq watch`` raised since ``since`` (all when None), oldest first."""
        from dspyq.api_client.deployments import alerts

        return alerts(self.engine, since)

    def improve(
        self,
        name: str,
        *,
        alias: str = "production",
        optimizer: Teleprompter | None = None,
        metric: Metric | str,
        min_gain: float = 0.0,
        min_feedback: int = 20,
        canary: float | None = 0.1,
        **options: Any,
    ) -> Improvement:
        """Re-optimize ``name@alias`` from its feedback and deploy the candidate (as a
        canary) only if it beats the current version by ``min_gain`` on held-out feedback.
        ``options``: ``holdout``, ``canary_window``, ``min_samples``, ``timeout``."""
        from dspyq.api_client.improve import improve
        from dspyq.api_client.validation import check_options

        accepted = ("holdout", "canary_window", "min_samples", "timeout")
        check_options(options, accepted, "improve")
        client: Client = self  # type: ignore[assignment]
        return improve(
            client,
            name,
            alias=alias,
            optimizer=optimizer,
            metric=metric,
            min_gain=min_gain,
            min_feedback=min_feedback,
            canary=canary,
            **options,
        )

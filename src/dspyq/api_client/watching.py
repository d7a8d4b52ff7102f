"""The client's methods for the watching and improving half of the production loop.

:class:`Client` inherits them; they need only its SQL engine and itself (``improve``
optimizes, evaluates and deploys through the client's other methods).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.engine import Engine

    from dspyq.api_client.client import Client
    from dspyq.api_client.improve import Improvement
    from dspyq.optimize.teleprompter import Teleprompter
    from dspyq.store.models import AlertRecord
    from dspyq.tasks.metrics import Metric

__all__ = ["WatchingMethods"]


class WatchingMethods:
    """``alerts`` and ``improve``, mixed into :class:`~dspyq.api_client.client.Client`."""

    if TYPE_CHECKING:

        @property
        def engine(self) -> Engine: ...

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

"""How long a job waits before it runs again after meeting an SQL or Redis outage.

A job that could not reach the SQL store or Redis is sent again for later (see
:mod:`dspyq.tasks.policies`); the longer this process has met the outage, the longer
the wait (from 2 s up to :data:`INFRA_RETRY_MAX_SECONDS`), so a long outage is not
hammered by retries. Each worker process has one clock, in its
:class:`~dspyq.tasks.context.WorkerContext`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

__all__ = ["INFRA_RETRY_MAX_SECONDS", "OutageClock"]

INFRA_RETRY_MAX_SECONDS = 30.0


class OutageClock:
    """When this process first met the outage still going on, if any."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started: float | None = None

    def retry_wait(self, limit: float) -> float:
        """Seconds before a job that met the outage runs again (jittered, at most ``limit``)."""
        now = self.clock()
        if self.started is None:
            self.started = now
        ceiling = min(limit, max(2.0, min(INFRA_RETRY_MAX_SECONDS, now - self.started)))
        return random.uniform(ceiling / 2, ceiling)

    def over(self) -> None:
        """SQL and Redis answer again."""
        self.started = None

"""Per-process resources a task needs: settings, the SQL stores and a pooled HTTP client.

Built once per worker process on first use (threads of the process share them), so a
task costs no connection set-up.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

import httpx
from sqlalchemy.engine import Engine

from dspyq.events import Event
from dspyq.settings import Settings, get_settings
from dspyq.store import EventStore, ExecutionStore, LMRequestStore, init_db, make_engine


@dataclass
class TaskEnvironment:
    settings: Settings
    engine: Engine
    executions: ExecutionStore
    events: EventStore
    lm_requests: LMRequestStore
    http: httpx.Client
    node: str = field(default_factory=socket.gethostname)

    def emit(self, event: Event) -> None:
        """Record an event now (idempotent by event id)."""
        self.events.append(event)


_lock = threading.Lock()
_env: TaskEnvironment | None = None


def task_environment() -> TaskEnvironment:
    """The process's environment, created (and the schema migrated) on first use."""
    global _env
    with _lock:
        if _env is None:
            settings = get_settings()
            engine = make_engine(settings.database_url)
            init_db(engine)
            limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
            _env = TaskEnvironment(
                settings=settings,
                engine=engine,
                executions=ExecutionStore(engine),
                events=EventStore(engine),
                lm_requests=LMRequestStore(engine),
                http=httpx.Client(limits=limits, timeout=httpx.Timeout(60.0, connect=10.0)),
            )
        return _env


def reset_task_environment() -> None:
    """Forget the environment (after settings changed, or at process exit)."""
    global _env
    with _lock:
        if _env is not None:
            _env.http.close()
            _env.engine.dispose()
        _env = None

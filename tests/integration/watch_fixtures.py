"""What the watcher tests share: executions, LM calls and feedback written as workers
write them (rows in SQL), at the moments a test chooses."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import redis
from sqlalchemy import Engine

from dspyq.api_client import Client
from dspyq.settings import Settings
from dspyq.store.engine import write_transaction
from dspyq.store.lm_requests import LMRequestStore
from dspyq.store.models import ExecutionRecord, FeedbackRecord
from dspyq.testing.cluster import SECRET_KEY, Cluster
from dspyq.watch import Watcher

LM = "openai/gpt-4o-mini"


def served(
    engine: Engine,
    name: str,
    version: int,
    *,
    at: datetime,
    duration_ms: float = 100.0,
    count: int = 1,
    failed: bool = False,
    lm_failures: int = 0,
    score: float | None = None,
    lm: str = LM,
) -> list[str]:
    """``count`` executions of ``name:version`` finished at ``at``, each with one LM call
    (the first ``lm_failures`` of them failed) and an optional feedback score."""
    task_ids = []
    with write_transaction(engine, "write served jobs") as conn:
        for index in range(count):
            task_id = uuid.uuid4().hex
            task_ids.append(task_id)
            finished = at - timedelta(milliseconds=index)
            conn.execute(
                ExecutionRecord.__table__.insert().values(  # type: ignore[attr-defined]
                    task_id=task_id,
                    status="failed" if failed else "succeeded",
                    program="Predict",
                    lm=lm,
                    inputs={"question": f"q{index}"},
                    outputs={"answer": f"a{index}"},
                    created_at=finished - timedelta(milliseconds=duration_ms),
                    started_at=finished - timedelta(milliseconds=duration_ms),
                    finished_at=finished,
                    duration_ms=duration_ms,
                    program_name=name or None,
                    program_version=version or None,
                )
            )
            conn.execute(_lm_insert(task_id, lm, index < lm_failures, finished))
            if score is not None:
                conn.execute(
                    FeedbackRecord.__table__.insert().values(  # type: ignore[attr-defined]
                        task_id=task_id,
                        program_name=name or None,
                        program_version=version or None,
                        score=score,
                        created_at=finished,
                    )
                )
    return task_ids


def _lm_insert(task_id: str, lm: str, failed: bool, at: datetime) -> object:
    from dspyq.store.models import LMRequestRecord

    row = LMRequestStore.row(
        uuid.uuid4().hex,
        model=lm,
        provider=lm.split("/")[0],
        task_id=task_id,
        status="failed" if failed else "succeeded",
        created_at=at,
    )
    return LMRequestRecord.__table__.insert().values(**row)  # type: ignore[attr-defined]


def make_watcher(engine: Engine, redis_url: str, prefix: str, **watch: object) -> Watcher:
    """A watcher over ``engine`` with ``watch`` settings (seconds-long windows in tests)."""
    settings = Settings(key_prefix=prefix, watch={"interval_seconds": 1.0, **watch})
    return Watcher(settings, engine, redis.Redis.from_url(redis_url))


def client_on(cluster: Cluster, database_url: str, **settings: object) -> Client:
    """A client of ``cluster`` whose ``openai`` provider is the cluster's fake LM."""
    return Client(
        Settings(
            broker_url=cluster.redis_url,
            key_prefix=cluster.prefix,
            database_url=database_url,
            providers={"openai": {"api_key": SECRET_KEY, "api_base": cluster.fake_lm.openai_base}},
            **settings,  # type: ignore[arg-type]
        )
    )

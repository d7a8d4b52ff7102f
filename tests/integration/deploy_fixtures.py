"""What the deployment tests share: a cluster of real workers with the fake LM and a
client of it, saved versions of a program, and a deployer on real SQL and Redis whose
pools' live workers and smoke runs the test decides.

A test module takes the fixtures with ``from deploy_fixtures import client, cluster``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import Engine
from watch_fixtures import client_on

import dspyq
from dspyq.api_client import Client
from dspyq.core.program import program_to_spec
from dspyq.deploy import AliasAnnouncer, Deployer, RunSmoke
from dspyq.settings import Settings
from dspyq.store.executions import ExecutionStore
from dspyq.store.programs import ProgramStore
from dspyq.testing.cluster import Cluster, running_cluster

LOCAL_LM = "local/test-model"
"""A model of the default ``local`` provider: its api_base is on this host, so no key."""


@pytest.fixture
def cluster(tmp_path: Path, sqlite_url: str) -> Iterator[Cluster]:
    """Redis, SQL and the fake LM; the test starts the workers it needs."""
    with running_cluster(tmp_path, sqlite_url, latency=0.01) as cluster:
        yield cluster


@pytest.fixture
def client(cluster: Cluster, sqlite_url: str) -> Iterator[Client]:
    """A client that, like the workers, holds the provider's key (deploy checks it)."""
    with client_on(cluster, sqlite_url) as client:
        yield client


def openai_program(instructions: str) -> dspyq.Predict:
    """A Predict on the cluster's ``openai`` pool with its own instructions."""
    made = dspyq.Predict(dspyq.Signature("question -> answer").with_instructions(instructions))
    made.lm = dspyq.LM("openai/m")
    return made


def save_versions(engine: Engine, name: str, count: int, lm: str | None = LOCAL_LM) -> list[int]:
    """Save ``count`` versions of a Predict as ``name`` (each its own instructions)."""
    versions = []
    for n in range(count):
        program = dspyq.Predict(
            dspyq.Signature("question -> answer").with_instructions(f"Answer, take {n + 1}.")
        )
        if lm is not None:
            program.lm = dspyq.LM(lm)
        spec = program_to_spec(program)
        record = ProgramStore(engine).save(name, spec.kind, spec.model_dump(mode="json"))
        versions.append(record.version)
    return versions


def make_deployer(
    engine: Engine,
    redis_url: str,
    prefix: str,
    *,
    live: Callable[[str], int] = lambda pool: 1,
    run_smoke: RunSmoke | None = None,
    settings: Settings | None = None,
) -> Deployer:
    announcer = AliasAnnouncer(redis.Redis.from_url(redis_url), prefix)
    return Deployer(
        engine,
        announcer,
        settings or Settings(key_prefix=prefix),
        live_workers=live,
        run_smoke=run_smoke,
    )


def record_execution(
    engine: Engine, task_id: str, name: str | None = None, version: int | None = None
) -> None:
    """An execution row of job ``task_id``, served by ``name`` version ``version``."""
    from sqlalchemy import update

    from dspyq.store.engine import write_transaction
    from dspyq.store.models import ExecutionRecord

    ExecutionStore(engine).create_pending(task_id, None, "Predict", "Predict", LOCAL_LM, {})
    with write_transaction(engine, "tag execution") as conn:
        conn.execute(
            update(ExecutionRecord)
            .where(ExecutionRecord.task_id == task_id)  # type: ignore[arg-type]
            .values(program_name=name, program_version=version)
        )


def scores_of(values: Sequence[float]) -> RunSmoke:
    """A smoke runner that reports the mean of ``values`` and remembers its calls."""
    calls: list[tuple[str, list[Any], Any]] = []

    def run(reference: str, examples: Sequence[Any], metric: Any) -> float | None:
        calls.append((reference, list(examples), metric))
        return sum(values) / len(values)

    run.calls = calls  # type: ignore[attr-defined]
    return run

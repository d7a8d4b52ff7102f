"""The client's side of the production loop, as functions the ``Client`` methods call.

``Client.deploy`` / ``rollback`` / ``deployments`` / ``feedback`` / ``alerts`` /
``lineage`` are thin wrappers over these: each takes what the client already holds
(its settings, SQL engine, and for deployments the two things only it knows, how many
live workers serve a pool and how to run smoke examples on the queue). The client
imports this module when one of those methods is first called, so a client that only
submits jobs never loads the deployment machinery.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dspyq.core.example import Example, Prediction
from dspyq.deploy import AliasAnnouncer, Deployer, Deployment, LiveWorkers, RunSmoke
from dspyq.errors import DspyqError, InputError
from dspyq.program_ref import parse_program_ref
from dspyq.resilience.redis_client import redis_from_url
from dspyq.settings import Settings
from dspyq.store.alerts import AlertStore
from dspyq.store.feedback import FeedbackStore
from dspyq.store.lineage import LineageStore
from dspyq.store.models import AlertRecord, FeedbackRecord, LineageRecord

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from dspyq.api_client.client import Client
    from dspyq.api_client.pools import PoolStatus
    from dspyq.core.module import Module

__all__ = [
    "SMOKE_METRIC",
    "alerts",
    "client_deployer",
    "completed",
    "deploy",
    "deployer",
    "deployments",
    "feedback",
    "lineage",
    "live_workers_from",
    "rollback",
    "smoke_runner",
]

SMOKE_METRIC = "dspyq.api_client.deployments:completed"
"""The metric of smoke examples given without one: each example must just run."""


def completed(example: Example, prediction: Prediction, trace: Any = None) -> float:
    """1.0 for any prediction: scores that the example ran at all."""
    return 1.0


def live_workers_from(pools: Callable[[], Sequence[PoolStatus]]) -> LiveWorkers:
    """Live workers per pool from ``Client.pools`` (one Celery broadcast per question)."""

    def live(pool: str) -> int:
        return sum(len(status.workers) for status in pools() if status.pool == pool)

    return live


def smoke_runner(
    load_program: Callable[[str, int | None], Module],
    evaluate: Callable[..., Any],
    timeout: float | None = 300.0,
) -> RunSmoke:
    """Smoke examples scored on the pool by ``Client.evaluate`` on the version loaded by
    ``Client.load_program``. The score is evaluate's (a percentage): ``min_score=90``
    means 90%. Without a metric every example must run (a failed one fails the step)."""

    def run(reference: str, examples: Sequence[Any], metric: Any) -> float | None:
        ref = parse_program_ref(reference)
        program = load_program(ref.name, ref.version)
        inputs = {
            name
            for _, predictor in program.named_predictors()
            for name in predictor.signature.input_fields
        }
        devset = [_example(item, inputs) for item in examples]
        result = evaluate(
            program,
            devset,
            metric=metric if metric is not None else SMOKE_METRIC,
            display_progress=False,
            timeout=timeout,
        )
        score = float(result.score)
        if metric is None and score < 100.0:
            failed = round(len(devset) * (100.0 - score) / 100.0)
            raise DspyqError(f"{failed} of {len(devset)} smoke examples failed on {reference}")
        return score if metric is not None else None

    return run


def deployer(
    settings: Settings,
    engine: Engine,
    *,
    live_workers: LiveWorkers,
    run_smoke: RunSmoke | None = None,
) -> Deployer:
    """A :class:`~dspyq.deploy.Deployer` announcing on the settings' Redis and prefix."""
    announcer = AliasAnnouncer(redis_from_url(settings.effective_redis_url), settings.key_prefix)
    return Deployer(engine, announcer, settings, live_workers=live_workers, run_smoke=run_smoke)


def client_deployer(client: Client) -> Deployer:
    """The deployer of ``client``: its pools' live workers, smoke runs on its queue."""
    return deployer(
        client.settings,
        client.engine,
        live_workers=live_workers_from(client.pools),
        run_smoke=smoke_runner(client.load_program, client.evaluate),
    )


def deploy(client: Client, name: str, version: int | None, **options: Any) -> Deployment:
    """``Client.deploy``: the pipeline run with ``client``'s pools and queue."""
    with _moving(client, name) as deployer:
        return deployer.deploy(name, version, **options)


def rollback(client: Client, name: str, alias: str) -> Deployment:
    """``Client.rollback``: back to the version ``name@alias`` served before."""
    with _moving(client, name) as deployer:
        return deployer.rollback(name, alias)


@contextmanager
def _moving(client: Client, name: object) -> Iterator[Deployer]:
    """A deployer for one move of ``name``'s alias; its Redis connection closed after."""
    deployer = client_deployer(client)
    try:
        yield deployer
    finally:
        deployer.announcer.redis.close()
        # The client's own submits by reference check inputs against the new target now.
        if client._references is not None and isinstance(name, str):
            client._references.forget(name.strip())


def deployments(
    engine: Engine, name: str | None = None, alias: str | None = None
) -> list[Deployment]:
    """The alias history of ``name`` (of every program when None) from SQL, newest
    first; InputError for a name nothing is saved under or an alias that cannot be one."""
    from dspyq.deploy.plan import checked_name
    from dspyq.deploy.record import DeploymentLog
    from dspyq.program_ref import check_alias
    from dspyq.store.resolve import ProgramResolver

    if name is not None:
        name = checked_name(name)
        ProgramResolver(engine).record(name)  # InputError naming the saved programs
    if alias is not None:
        alias = check_alias(alias)
    return [Deployment.from_record(r) for r in DeploymentLog(engine).store.history(name, alias)]


def feedback(
    engine: Engine,
    job_id: str,
    score: float,
    label: str | None = None,
    comment: str | None = None,
) -> FeedbackRecord:
    """Store feedback on job ``job_id`` (InputError, nothing stored, if it is bad)."""
    return FeedbackStore(engine).record(job_id, score, label=label, comment=comment)


def alerts(engine: Engine, since: datetime | None = None) -> list[AlertRecord]:
    """The alerts raised since ``since`` (all when None), oldest first."""
    if since is not None and not isinstance(since, datetime):
        raise InputError(f"since is a datetime, not {type(since).__name__}")
    return AlertStore(engine).since(since)


def lineage(engine: Engine, name: str, version: int) -> list[LineageRecord]:
    """Where ``name`` version ``version`` came from, back to its first ancestor."""
    from dspyq.deploy.plan import checked_name

    name = checked_name(name)
    if isinstance(version, bool) or not isinstance(version, int):
        raise InputError(f"a version is a whole number, not {version!r:.80}")
    return LineageStore(engine).chain(name, version)


def _example(item: Any, inputs: set[str]) -> Example:
    """``item`` as an Example; a dict's keys that are the program's inputs become its inputs."""
    if isinstance(item, Example):
        return item
    if isinstance(item, dict):
        return Example(**item).with_inputs(*(key for key in item if key in inputs))
    raise InputError(f"a smoke example is a dspyq.Example or a dict, not {type(item).__name__}")

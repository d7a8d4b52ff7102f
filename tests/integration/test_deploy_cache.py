"""Workers' cache of resolved programs: a promotion reaches other processes within 1 s
over Redis pub/sub, a missed announcement is caught up from SQL, and a cached
reference costs no SQL at all."""

from __future__ import annotations

import time
from collections.abc import Iterator
from multiprocessing.queues import Queue
from typing import TYPE_CHECKING, Any

import pytest
import redis
from deploy_fixtures import make_deployer, save_versions
from sqlalchemy import Engine, event

from dspyq.deploy.cache import ProgramCache
from dspyq.store import make_engine
from dspyq.store.aliases import AliasMove, AliasStore
from dspyq.store.deployments import DeploymentStore
from dspyq.store.models import DeploymentRecord
from dspyq.store.resolve import ProgramResolver

if TYPE_CHECKING:
    from store_fixtures import ProcessContext

pytestmark = pytest.mark.integration

PROMOTION_DEADLINE_S = 1.0


@pytest.fixture
def cache(store_engine: Engine, redis_url: str, prefix: str) -> Iterator[ProgramCache]:
    cache = ProgramCache(
        store_engine, redis.Redis.from_url(redis_url), prefix, recheck_interval=60.0
    ).start()
    yield cache
    cache.stop()


def _follow_in_child(url: str, redis_url: str, prefix: str, results: Queue[Any]) -> None:
    """A worker process: resolve qa@production until it serves version 2, say when."""
    engine = make_engine(url)
    cache = ProgramCache(engine, redis.Redis.from_url(redis_url), prefix, recheck_interval=60.0)
    try:
        cache.start()
        results.put(("ready", cache.resolve("qa@production").version))
        deadline = time.time() + 20
        while time.time() < deadline:
            if cache.resolve("qa@production").version == 2:
                results.put(("served", time.time()))
                return
            time.sleep(0.005)
        results.put(("served", None))
    except Exception as exc:
        results.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        cache.stop()
        engine.dispose()


def test_a_promotion_reaches_every_process_within_a_second(
    store_engine: Engine,
    store_url: str,
    redis_url: str,
    prefix: str,
    process_context: ProcessContext,
) -> None:
    save_versions(store_engine, "qa", 2)
    deployer = make_deployer(store_engine, redis_url, prefix)
    deployer.deploy("qa", 1)
    results = process_context.Queue()
    workers = [
        process_context.Process(
            target=_follow_in_child, args=(store_url, redis_url, prefix, results)
        )
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    try:
        assert [results.get(timeout=60) for _ in workers] == [("ready", 1)] * 2
        deployer.deploy("qa", 2)
        returned = time.time()
        served = [results.get(timeout=30) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=30)
    assert [kind for kind, _ in served] == ["served", "served"], served
    lags = [at - returned for _, at in served]
    assert all(lag < PROMOTION_DEADLINE_S for lag in lags), lags


def test_a_missed_announcement_is_caught_up_from_sql(store_engine: Engine) -> None:
    save_versions(store_engine, "qa", 2)
    DeploymentStore(store_engine).start(
        DeploymentRecord(id="d1", name="qa", alias="production", version=1)
    )
    aliases = AliasStore(store_engine)
    first = aliases.move("qa", "production", AliasMove(1, "d1"), expected_revision=None)
    assert first is not None
    cache = ProgramCache(store_engine, recheck_interval=0.2)  # hears nothing: not started
    assert cache.resolve("qa@production").version == 1
    DeploymentStore(store_engine).start(
        DeploymentRecord(id="d2", name="qa", alias="production", version=2)
    )
    aliases.move("qa", "production", AliasMove(2, "d2"), expected_revision=first.revision)
    assert cache.resolve("qa@production").version == 1  # cached, and no message came
    time.sleep(0.3)
    assert cache.resolve("qa@production").version == 2
    assert cache.invalidations == 1


def _statements(engine: Engine) -> list[str]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


def test_a_cached_reference_costs_no_sql(
    store_engine: Engine, redis_url: str, prefix: str, cache: ProgramCache
) -> None:
    save_versions(store_engine, "qa", 2)
    make_deployer(store_engine, redis_url, prefix).deploy("qa", 1)
    cache.resolve("qa@production")
    cache.resolve("qa:2")
    statements = _statements(store_engine)
    for n in range(100):
        assert cache.resolve("qa@production", f"job-{n}").version == 1
        assert cache.resolve("qa:2").version == 2
    assert statements == []


def _heard_within_deadline(cache: ProgramCache, before: int) -> bool:
    deadline = time.monotonic() + PROMOTION_DEADLINE_S
    while cache.invalidations == before and time.monotonic() < deadline:
        time.sleep(0.005)
    return cache.invalidations > before


def test_canary_choices_through_the_cache_match_the_store(
    store_engine: Engine, redis_url: str, prefix: str, cache: ProgramCache
) -> None:
    save_versions(store_engine, "qa", 2)
    deployer = make_deployer(store_engine, redis_url, prefix)
    deployer.deploy("qa", 1)
    assert cache.resolve("qa@production").version == 1
    heard = cache.invalidations
    deployer.deploy("qa", 2, canary=0.25)
    assert _heard_within_deadline(cache, heard)
    resolver = ProgramResolver(store_engine)
    jobs = [f"job-{n}" for n in range(400)]
    served = [cache.resolve("qa@production", j).version for j in jobs]
    assert served == [resolver.resolve("qa@production", j).version for j in jobs]
    assert 0.18 < served.count(2) / len(jobs) < 0.32
    heard = cache.invalidations
    deployer.promote("qa")
    assert _heard_within_deadline(cache, heard)
    assert {cache.resolve("qa@production", j).version for j in jobs} == {2}

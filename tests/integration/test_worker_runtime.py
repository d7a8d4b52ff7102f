"""An LM call inside a worker: L1 -> L2 Redis -> L3 SQL, then the shared rate limiter and
circuit breaker, then HTTP; every call stored as an event and an ``lm_requests`` row.

Real Redis (a key prefix per test), real SQLite in tmp_path, the fake LM server.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, text

from dspyq.core import observe
from dspyq.core.context import context
from dspyq.errors import CircuitOpenError, ProviderUnavailableError, RateLimitExceededError
from dspyq.lm import LM
from dspyq.lm.cache import default_cache
from dspyq.lm.gate import NoGate, provider_gate
from dspyq.resilience.gate import BREAKER_STATE_CHANGE
from dspyq.resilience.redis_client import redis_from_url
from dspyq.resilience.retry import RetryPolicy
from dspyq.settings import CacheSettings, ProviderSettings, Settings
from dspyq.store import EventStore, LMRequestStore, init_db, make_engine
from dspyq.tasks.context import installed_context
from dspyq.testing import FakeLMServer
from dspyq.workers.context import build_worker_runtime, install_runtime, installed_runtime
from dspyq.workers.runtime import WorkerRuntime

pytestmark = pytest.mark.integration

KEY = "sk-worker-secret-9876"


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    db = make_engine(sqlite_url)
    init_db(db)
    yield db
    db.dispose()


def _settings(**openai: Any) -> Settings:
    conf: dict[str, Any] = {
        "rate_limit": "100/m",
        "tokens_per_minute": 100_000,
        "breaker_fail_max": 5,
        "breaker_reset_timeout": 30.0,
    }
    conf.update(openai)
    return Settings(providers={"openai": ProviderSettings(**conf)}, cache=CacheSettings(ttl=3600))


RuntimeFactory = Callable[..., WorkerRuntime]


@pytest.fixture
def install(
    fake_lm: FakeLMServer, engine: Engine, client: redis.Redis, prefix: str
) -> Iterator[RuntimeFactory]:
    """Installs the worker runtime (with provider settings given per test) on this test's world,
    with its cache and gate bound for the test's LM calls, as a task binds them for a job."""
    installed: list[WorkerRuntime] = []

    with ExitStack() as bindings:

        def factory(max_inline_wait: float = 2.0, **openai: Any) -> WorkerRuntime:
            runtime = build_worker_runtime(
                _settings(**openai),
                engine,
                client,
                key_prefix=prefix,
                max_inline_wait=max_inline_wait,
            )
            install_runtime(runtime)
            installed.append(runtime)
            bindings.enter_context(context(lm_cache=runtime.cache, lm_gate=runtime.gate))
            return runtime

        yield factory
    for runtime in installed:
        runtime.uninstall()


@pytest.fixture
def runtime(install: RuntimeFactory) -> WorkerRuntime:
    return install()


def _lm(server: FakeLMServer, **kwargs: Any) -> LM:
    options: dict[str, Any] = {
        "api_base": server.openai_base,
        "api_key": KEY,
        "num_retries": 0,
        "retry_policy": RetryPolicy(base_delay=0.001, max_delay=0.002),
    }
    options.update(kwargs)
    return LM("openai/gpt-4o-mini", **options)


def _job() -> str:
    return f"job-{uuid.uuid4().hex[:8]}"


def _lm_events(engine: Engine, correlation_id: str) -> list[dict[str, Any]]:
    return [
        e.data for e in EventStore(engine).by_correlation(correlation_id, event_type="lm_request")
    ]


# --- a call through the whole path ---------------------------------------------------------------


def test_a_call_passes_limiter_and_breaker_and_is_recorded(
    runtime: WorkerRuntime, fake_lm: FakeLMServer, engine: Engine
) -> None:
    job = _job()
    lm = _lm(fake_lm)
    with context(correlation_id=job, parent_id="hop-1", task_id="task-1"):
        assert lm("What is 2 + 2?") == ["fake answer: What is 2 + 2?"]

    guards = runtime.gate.guards("openai")
    usage = guards.limiter.usage()
    entry = lm.history[-1]
    real_tokens = entry["usage"]["total_tokens"]
    assert usage.requests == 1
    assert usage.tokens == real_tokens  # the estimate was corrected to the real usage
    assert guards.breaker.state == "closed"

    (event,) = EventStore(engine).by_correlation(job)
    assert event.event_type == "lm_request"
    assert event.parent_id == "hop-1"
    assert event.data["status"] == "ok"
    assert event.data["cache_hit"] is False

    (row,) = LMRequestStore(engine).by_correlation(job)
    assert row.request_id == event.data["request_id"] == entry["uuid"]
    assert row.task_id == "task-1"
    assert (row.provider, row.model) == ("openai", "openai/gpt-4o-mini")
    assert row.input_tokens == entry["usage"]["prompt_tokens"] > 0
    assert row.output_tokens == entry["usage"]["completion_tokens"] > 0
    assert row.cost_usd == pytest.approx(entry["cost"]) and row.cost_usd > 0
    assert row.status == "succeeded" and row.cache_hit is False


def test_no_key_or_prompt_reaches_redis_or_the_database(
    runtime: WorkerRuntime, fake_lm: FakeLMServer, engine: Engine, client: redis.Redis, prefix: str
) -> None:
    with context(correlation_id=_job()):
        _lm(fake_lm)("top secret question")
    with engine.connect() as conn:
        stored = " ".join(
            str(row)
            for table in ("events", "lm_requests")
            for row in conn.execute(text(f"SELECT * FROM {table}")).all()
        )
    assert stored and KEY not in stored and "top secret" not in stored
    for name in client.scan_iter(f"{prefix}:*"):
        if client.type(name) == b"string":
            value = client.get(name)
            assert isinstance(value, bytes) and KEY.encode() not in value


# --- the cache layers ----------------------------------------------------------------------------


def test_second_identical_call_is_an_l1_hit_that_spends_no_budget(
    runtime: WorkerRuntime, fake_lm: FakeLMServer, engine: Engine
) -> None:
    job = _job()
    lm = _lm(fake_lm)
    with context(correlation_id=job):
        lm("same question")
        before = runtime.gate.guards("openai").limiter.usage()
        lm("same question")
    after = runtime.gate.guards("openai").limiter.usage()

    assert len(fake_lm.requests) == 1
    assert runtime.cache.hits == [1, 0, 0]
    assert (after.requests, after.tokens) == (before.requests, before.tokens)
    assert [e["cache_hit"] for e in _lm_events(engine, job)] == [False, True]
    rows = LMRequestStore(engine).by_correlation(job)
    assert [r.cache_hit for r in rows] == [False, True]
    assert LMRequestStore(engine).usage(correlation_id=job).cache_hits == 1


def test_a_fresh_l1_is_served_from_redis(
    runtime: WorkerRuntime, fake_lm: FakeLMServer, client: redis.Redis
) -> None:
    lm = _lm(fake_lm)
    lm("shared across the pool")
    runtime.l1.clear()  # what a new worker process starts with

    assert lm("shared across the pool") == ["fake answer: shared across the pool"]
    assert len(fake_lm.requests) == 1
    assert runtime.cache.hits == [0, 1, 0]
    assert len(runtime.l1) == 1  # filled on the way up
    assert runtime.gate.guards("openai").limiter.usage().requests == 1


def test_the_sql_layer_answers_when_redis_lost_its_data(
    runtime: WorkerRuntime, fake_lm: FakeLMServer, client: redis.Redis, prefix: str
) -> None:
    lm = _lm(fake_lm)
    lm("kept in sql")
    runtime.l1.clear()
    runtime.l2.flush()  # Redis writes are gathered for a few milliseconds
    redis_keys = list(client.scan_iter(f"{prefix}:lmcache:*"))
    assert len(redis_keys) == 1
    # What a Redis restarted empty loses: the answer, and the mark that it had them all.
    client.delete(*redis_keys, runtime.coverage.marker)
    runtime.coverage.check_every = 0.0  # notice now rather than within the second

    assert lm("kept in sql") == ["fake answer: kept in sql"]
    assert len(fake_lm.requests) == 1
    assert runtime.cache.hits == [0, 0, 1]
    runtime.l2.flush()
    assert client.exists(redis_keys[0]) == 1  # L2 refilled from L3
    assert 0 < client.pttl(redis_keys[0]) <= 3600 * 1000


def test_while_redis_has_lost_nothing_an_l2_miss_is_not_looked_up_in_sql(
    runtime: WorkerRuntime, fake_lm: FakeLMServer, client: redis.Redis, prefix: str
) -> None:
    runtime.coverage.margin = 0.0
    runtime.coverage.check_every = 0.0
    assert runtime.coverage.covers()  # SQL holds no answer Redis was not given
    lm = _lm(fake_lm)
    lm("kept everywhere")
    runtime.l1.clear()
    runtime.l2.flush()
    runtime.l3.flush()
    # Taken from Redis behind dspyq's back (no restart, no eviction): only SQL has it now.
    client.delete(*client.scan_iter(f"{prefix}:lmcache:*"))
    with runtime.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM cache_entries")).scalar() == 1

    assert lm("kept everywhere") == ["fake answer: kept everywhere"]
    assert len(fake_lm.requests) == 2  # asked again: L2 missed and SQL was not read
    assert runtime.cache.hits == [0, 0, 0]


def test_always_read_sql_finds_what_another_deployments_redis_holds(
    runtime: WorkerRuntime, fake_lm: FakeLMServer, client: redis.Redis, prefix: str
) -> None:
    runtime.coverage.margin = 0.0
    runtime.coverage.check_every = 0.0
    assert runtime.coverage.covers()
    runtime.settings.cache.always_read_sql = True  # as `dspyq config set` would
    runtime.reconfigure()
    lm = _lm(fake_lm)
    lm("written by another prefix")
    runtime.l1.clear()
    runtime.l2.flush()
    runtime.l3.flush()
    client.delete(*client.scan_iter(f"{prefix}:lmcache:*"))  # in SQL only, as theirs are

    assert lm("written by another prefix") == ["fake answer: written by another prefix"]
    assert len(fake_lm.requests) == 1
    assert runtime.cache.hits == [0, 0, 1]


def test_a_down_redis_cache_layer_does_not_fail_the_call(
    runtime: WorkerRuntime, fake_lm: FakeLMServer
) -> None:
    runtime.l2.layer.redis = redis_from_url(
        "redis://127.0.0.1:1/0", check=False, socket_connect_timeout=0.2, retries=0
    )
    lm = _lm(fake_lm)
    lm("redis cache down")
    runtime.l1.clear()
    runtime.l2.flush()  # the write fails, and is dropped: only a cache
    assert lm("redis cache down") == ["fake answer: redis cache down"]
    assert len(fake_lm.requests) == 1
    assert runtime.cache.hits == [0, 0, 1]


# --- the rate limiter ----------------------------------------------------------------------------


def test_an_exhausted_limiter_with_a_long_wait_refuses_with_retry_after(
    install: RuntimeFactory, fake_lm: FakeLMServer, engine: Engine
) -> None:
    install(rate_limit="1/m")
    job = _job()
    lm = _lm(fake_lm)
    with context(correlation_id=job):
        lm("first")
        started = time.monotonic()
        with pytest.raises(RateLimitExceededError) as info:
            lm("second")
    assert time.monotonic() - started < 1.0  # refused at once, no worker slot held
    # Spacing is (period + rate_limit_jitter) / limit: 60.1 s at 1/m with the default.
    assert info.value.retry_after is not None and 2.0 < info.value.retry_after <= 60.1
    assert info.value.context["provider"] == "openai"
    assert len(fake_lm.requests) == 1

    statuses = [e["status"] for e in _lm_events(engine, job)]
    assert statuses == ["ok", "RateLimitExceededError"]
    failed = LMRequestStore(engine).by_correlation(job)[-1]
    assert failed.status == "failed"
    assert failed.error is not None and failed.error["type"] == "RateLimitExceededError"


def test_a_short_wait_is_slept_through_inside_the_call(
    install: RuntimeFactory, fake_lm: FakeLMServer
) -> None:
    install(rate_limit="1/s")
    lm = _lm(fake_lm)
    lm("one")
    started = time.monotonic()
    assert lm("two") == ["fake answer: two"]
    assert time.monotonic() - started >= 0.5
    assert len(fake_lm.requests) == 2


def test_the_token_budget_refuses_a_call_that_does_not_fit(
    install: RuntimeFactory, fake_lm: FakeLMServer
) -> None:
    runtime = install(tokens_per_minute=300)
    lm = _lm(fake_lm, max_tokens=200)
    lm("small")  # real usage is a few tokens: the 200-token estimate is given back
    assert runtime.gate.guards("openai").limiter.usage().tokens < 50
    lm("another small one")
    with pytest.raises(RateLimitExceededError):
        lm("x" * 1200)  # ~300 + 200 estimated tokens: the budget cannot hold it now
    assert len(fake_lm.requests) == 2


# --- the circuit breaker -------------------------------------------------------------------------


def test_the_breaker_opens_after_provider_errors_then_fails_fast(
    install: RuntimeFactory, fake_lm: FakeLMServer, engine: Engine
) -> None:
    runtime = install(breaker_fail_max=3)
    fake_lm.fail_next(3, 500)
    job = _job()
    lm = _lm(fake_lm)
    with context(correlation_id=job):
        for attempt in range(3):
            with pytest.raises(ProviderUnavailableError):
                lm(f"down {attempt}")
        with pytest.raises(CircuitOpenError) as info:
            lm("fails fast")

    assert len(fake_lm.requests) == 3  # the fourth call never reached the server
    assert info.value.retry_after is not None and 0 < info.value.retry_after <= 30
    assert runtime.gate.guards("openai").breaker.state == "open"

    events = EventStore(engine).by_correlation(job)
    changes = [e.data for e in events if e.event_type == BREAKER_STATE_CHANGE]
    assert changes == [{"provider": "openai", "from": "closed", "to": "open"}]
    statuses = [e.data["status"] for e in events if e.event_type == "lm_request"]
    assert statuses == ["ProviderUnavailableError"] * 3 + ["CircuitOpenError"]


def test_retries_pass_the_breaker_one_attempt_at_a_time(
    install: RuntimeFactory, fake_lm: FakeLMServer
) -> None:
    install(breaker_fail_max=2)
    fake_lm.fail_next(5, 503)
    lm = _lm(fake_lm, num_retries=4)
    with pytest.raises(CircuitOpenError):
        lm("retried until the breaker opens")
    assert len(fake_lm.requests) == 2


def test_the_breaker_is_shared_by_every_gate_on_the_same_redis(
    install: RuntimeFactory, fake_lm: FakeLMServer
) -> None:
    first = install(breaker_fail_max=1)
    fake_lm.fail_next(1, 500)
    with pytest.raises(ProviderUnavailableError):
        _lm(fake_lm)("break it")
    first.uninstall()

    install(breaker_fail_max=1)  # another worker process of the pool
    with pytest.raises(CircuitOpenError):
        _lm(fake_lm)("still broken")
    assert len(fake_lm.requests) == 1


# --- async, install and uninstall ------------------------------------------------------------------


def test_async_calls_take_the_same_path(
    runtime: WorkerRuntime, fake_lm: FakeLMServer, engine: Engine
) -> None:
    job = _job()
    lm = _lm(fake_lm)

    async def twice() -> list[str]:
        with context(correlation_id=job):
            first = await lm.acall("async question")
            second = await lm.acall("async question")
        return first + second

    assert asyncio.run(twice()) == ["fake answer: async question"] * 2
    assert len(fake_lm.requests) == 1
    usage = runtime.gate.guards("openai").limiter.usage()
    assert usage.requests == 1
    assert usage.tokens == lm.history[0]["usage"]["total_tokens"]
    assert [e["cache_hit"] for e in _lm_events(engine, job)] == [False, True]


def test_uninstall_restores_the_plain_process(
    engine: Engine, client: redis.Redis, prefix: str
) -> None:
    before = default_cache()
    runtime = build_worker_runtime(_settings(), engine, client, key_prefix=prefix)
    ctx = install_runtime(runtime)
    assert installed_context() is ctx and installed_runtime() is runtime
    # Nothing changes for code that did not bind the worker's context...
    assert default_cache() is before
    assert isinstance(provider_gate(), NoGate)
    # ...and a job's calls, which bind it, use its cache and gate.
    with ctx.bound():
        assert default_cache() is runtime.cache
        assert provider_gate() is runtime.gate
    assert observe.has_sinks()

    runtime.uninstall()
    runtime.uninstall()  # idempotent
    assert installed_runtime() is None
    assert installed_context() is None
    assert default_cache() is before
    assert not observe.has_sinks()


def test_installing_again_replaces_the_earlier_runtime(install: RuntimeFactory) -> None:
    first = install()
    second = install()
    assert installed_runtime() is second
    assert first._installed is False
    assert provider_gate() is second.gate
    observe.emit("counted_once", {})
    assert first.sink is not second.sink
    assert observe.has_sinks()
    assert second.sink.events.count(event_type="counted_once") == 1


def test_install_builds_its_own_engine_and_redis_from_settings(
    fake_lm: FakeLMServer, redis_url: str, sqlite_url: str, prefix: str, client: redis.Redis
) -> None:
    settings = Settings(redis_url=redis_url, database_url=sqlite_url, key_prefix=prefix)
    runtime = build_worker_runtime(settings)
    install_runtime(runtime)
    try:
        job = _job()
        with context(correlation_id=job, lm_cache=runtime.cache, lm_gate=runtime.gate):
            _lm(fake_lm)("self-built")
        assert LMRequestStore(runtime.engine).usage(correlation_id=job).requests == 1
        runtime.l2.flush()
        assert list(client.scan_iter(f"{prefix}:lmcache:*"))  # the settings' prefix is used
        assert list(client.scan_iter(f"{prefix}:ratelimit:*"))
    finally:
        runtime.uninstall()
    assert installed_runtime() is None

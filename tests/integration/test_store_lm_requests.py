"""LM request log: idempotent by request id, summed per job."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from dspyq.errors import RateLimitedError
from dspyq.store import LMRequestStore, LMUsage

pytestmark = pytest.mark.integration

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def test_record_is_idempotent_by_request_id(store_engine: Engine) -> None:
    store = LMRequestStore(store_engine)
    assert store.record(
        "req-1",
        model="gpt-4",
        provider="openai",
        correlation_id="corr-1",
        task_id="task-1",
        input_tokens=150,
        output_tokens=75,
        cost_usd=0.002,
        duration_ms=800.0,
    )
    assert not store.record("req-1", model="gpt-4", input_tokens=999, correlation_id="corr-1")
    (stored,) = store.by_correlation("corr-1")
    assert (stored.provider, stored.model, stored.task_id) == ("openai", "gpt-4", "task-1")
    assert (stored.input_tokens, stored.output_tokens) == (150, 75)
    assert stored.cost_usd == pytest.approx(0.002)
    assert stored.duration_ms == 800.0
    assert (stored.cache_hit, stored.status, stored.error) == (False, "succeeded", None)
    assert stored.created_at.tzinfo is UTC


def test_failed_requests_keep_their_error(store_engine: Engine) -> None:
    store = LMRequestStore(store_engine)
    error = RateLimitedError("429 from openai", retry_after=2.0, correlation_id="corr-1")
    store.record(
        "req-1", model="gpt-4", correlation_id="corr-1", status="failed", error=error.to_dict()
    )
    (stored,) = store.by_correlation("corr-1")
    assert stored.status == "failed"
    assert stored.error == error.to_dict()
    assert stored.error is not None
    assert stored.error["retry_strategy"] == "after"


def test_usage_sums_one_job(store_engine: Engine) -> None:
    store = LMRequestStore(store_engine)
    store.record(
        "a",
        model="m",
        correlation_id="c1",
        task_id="t1",
        input_tokens=10,
        output_tokens=5,
        cost_usd=0.25,
        created_at=T0,
    )
    store.record(
        "b",
        model="m",
        correlation_id="c1",
        task_id="t2",
        input_tokens=20,
        output_tokens=7,
        cost_usd=0.5,
        created_at=T0 + timedelta(seconds=1),
    )
    store.record(
        "c",
        model="m",
        correlation_id="c1",
        task_id="t2",
        input_tokens=20,
        output_tokens=7,
        cache_hit=True,
        created_at=T0 + timedelta(seconds=2),
    )
    store.record("d", model="m", correlation_id="c2", input_tokens=1000, cost_usd=9.0)

    assert store.usage(correlation_id="c1") == LMUsage(
        requests=3, cache_hits=1, input_tokens=50, output_tokens=19, cost_usd=0.75
    )
    assert store.usage(task_id="t2") == LMUsage(2, 1, 40, 14, 0.5)
    assert store.usage(correlation_id="nobody") == LMUsage(0, 0, 0, 0, 0.0)
    assert store.usage().requests == 4
    assert [r.request_id for r in store.by_correlation("c1")] == ["a", "b", "c"]

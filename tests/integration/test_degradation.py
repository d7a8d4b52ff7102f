"""Real workers answer from a stale cached answer when the provider is gone."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

import dspyq
from dspyq.errors import ProviderError
from dspyq.store import EventStore, make_engine
from dspyq.store.models import CacheEntry
from dspyq.testing.cluster import make_cluster

pytestmark = pytest.mark.integration


def _cached_answers(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(CacheEntry)).scalar_one())


def test_a_job_is_answered_stale_when_its_provider_is_down(tmp_path: Path, sqlite_url: str) -> None:
    cluster, server = make_cluster(
        tmp_path,
        sqlite_url,
        latency=0.0,
        DSPYQ_DEGRADATION__STALE_CACHE="true",
        DSPYQ_CACHE__TTL="1",
        DSPYQ_PROVIDERS__OPENAI__NUM_RETRIES="0",
    )
    try:
        server.answer_fields({"answer": "Paris"})
        cluster.start_worker("w1")
        qa = dspyq.Predict("question -> answer")
        fresh = cluster.client.submit(qa, lm="openai/m", question="Capital of France?")
        assert fresh.result(timeout=30).answer == "Paris"
        assert fresh.stale is False

        # The SQL layer's writes are batched a few milliseconds behind the job (see
        # dspyq.lm.write_behind): wait for the answer to be there before the kill.
        engine = make_engine(sqlite_url)
        deadline = time.monotonic() + 10
        while _cached_answers(engine) == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _cached_answers(engine) == 1

        # A new worker process: its in-process cache is empty, Redis has dropped the
        # expired answer, and only the SQL layer still holds it, expired.
        cluster.kill("w1")
        time.sleep(1.5)
        server.stop()  # the provider is gone: connections are refused
        cluster.start_worker("w2")

        stale = cluster.client.submit(qa, lm="openai/m", question="Capital of France?")
        assert stale.result(timeout=30).answer == "Paris"
        assert stale.stale is True
        trace = EventStore(make_engine(sqlite_url)).by_correlation(stale.correlation_id)
        [degraded] = [e for e in trace if e.event_type == "degraded_response"]
        assert degraded.data["provider"] == "openai"
        assert degraded.data["reason"] == "ProviderUnavailableError"
        [complete] = [e for e in trace if e.event_type == "module_execution_complete"]
        assert complete.data["stale"] is True

        # Nothing cached for this question: the job fails as it would without the setting.
        never = cluster.client.submit(qa, lm="openai/m", question="Capital of Peru?")
        with pytest.raises(ProviderError):
            never.result(timeout=30)
    finally:
        cluster.stop()
        server.stop()

"""A worker redacts personal data before the request reaches the provider."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import dspyq
from dspyq.store import EventStore, make_engine
from dspyq.testing.cluster import make_cluster

pytestmark = pytest.mark.integration

QUESTION = (
    "Refund jane.doe@example.com, phone +44 20 7946 0958, card 4111 1111 1111 1111, "
    "IBAN GB82 WEST 1234 5698 7654 32: how many days does a refund take?"
)


def test_the_fake_provider_receives_no_personal_data_from_a_worker(
    tmp_path: Path, sqlite_url: str
) -> None:
    cluster, server = make_cluster(
        tmp_path, sqlite_url, latency=0.0, DSPYQ_PROVIDERS__OPENAI__REDACT="true"
    )
    try:
        server.answer_fields({"answer": "5"})
        cluster.start_worker("w1")
        job = cluster.client.submit(
            dspyq.Predict("question -> answer"), lm="openai/m", question=QUESTION
        )
        assert job.result(timeout=30).answer == "5"

        [request] = server.requests
        sent = json.dumps(request["body"])
        for value in ("jane.doe@example.com", "7946 0958", "4111 1111", "GB82 WEST"):
            assert value not in sent
        assert "how many days does a refund take?" in sent
        assert "[REDACTED_EMAIL]" in sent and "[REDACTED_CARD]" in sent

        trace = EventStore(make_engine(sqlite_url)).by_correlation(job.correlation_id)
        [event] = [e for e in trace if e.event_type == "pii_redacted"]
        assert event.data["counts"] == {"account": 1, "card": 1, "email": 1, "phone": 1}
        assert "jane.doe@example.com" not in json.dumps(event.data)
    finally:
        cluster.stop()
        server.stop()

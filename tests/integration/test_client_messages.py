"""What a client's messages show of a job in Flower: short, readable, never the program."""

from __future__ import annotations

from typing import Any

import pytest
from celery.signals import before_task_publish

import dspyq
from dspyq.settings import Settings

pytestmark = pytest.mark.integration

LONG_INSTRUCTIONS = "Answer with the capital city only. " * 200  # a large program spec


def test_flower_is_shown_the_lm_correlation_id_and_inputs_not_the_program(
    redis_url: str, prefix: str, sqlite_url: str
) -> None:
    published: list[dict[str, Any]] = []

    def keep(sender: str | None = None, headers: dict[str, Any] | None = None, **_: Any) -> None:
        published.append(dict(headers or {}))

    before_task_publish.connect(keep, weak=False)
    client = dspyq.Client(
        Settings(broker_url=redis_url, key_prefix=prefix, database_url=sqlite_url)
    )
    program = dspyq.Predict(dspyq.Signature("question -> answer", LONG_INSTRUCTIONS))
    try:
        lone = client.submit(program, lm="openai/gpt-4o-mini", question="Capital of Chile?")
        batch = client.map(
            program, [{"question": f"Capital of country {n}?"} for n in range(40)], lm="openai/m"
        )
    finally:
        before_task_publish.disconnect(keep)
        client.close()

    assert published[0]["task"] == "dspyq.execute_module"
    assert {h["task"] for h in published[1:]} == {"dspyq.execute_batch"}
    lone_repr, batch_reprs = published[0]["kwargsrepr"], [h["kwargsrepr"] for h in published[1:]]
    assert "openai/gpt-4o-mini" in lone_repr and lone.correlation_id in lone_repr
    assert "Capital of Chile?" in lone_repr
    correlation_ids = {job.correlation_id for job in batch}
    for shown in batch_reprs:
        assert "'jobs': " in shown and "openai/m" in shown
        assert any(cid in shown for cid in correlation_ids)
    for shown in (lone_repr, *batch_reprs):
        assert "capital city only" not in shown and len(shown) < 400

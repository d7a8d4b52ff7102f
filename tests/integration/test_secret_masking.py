"""Secrets planted everywhere a user can put one are found nowhere dspyq writes: Redis
(every key of the deployment's prefix), SQL rows, worker and client logs, task arguments
as Celery's events (and so Flower) show them, and exported spans."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response
from test_hardening_security import _sql_dump
from test_telemetry_tracing import OTLPReceiver

import dspyq
from dspyq.errors import DspyqError, InputError
from dspyq.testing.cluster import SECRET_KEY, Cluster, running_cluster

pytestmark = pytest.mark.integration

INPUT_KEY = "sk-planted-input-key-0987654321abcd"
INPUT_PASSWORD = "planted-input-password-hunter2"
URL_PASSWORD = "planted-url-pw-5x9"
DB_PASSWORD = "planted-db-pw-7q2"
OTLP_PASSWORD = "planted-otlp-pw-3k8"
BEARER = "planted-bearer-token-c0ffee00"
INSTRUCTION_KEY = "sk-planted-instruction-key-1122334455"
PLANTED = {
    "provider api key (settings)": SECRET_KEY,
    "input named api_key": INPUT_KEY,
    "input named password": INPUT_PASSWORD,
    "password in an input URL": URL_PASSWORD,
    "database password (settings)": DB_PASSWORD,
    "collector password (settings)": OTLP_PASSWORD,
    "bearer token (LM kwargs)": BEARER,
    "key in the program's instructions": INSTRUCTION_KEY,
}


class RawOTLPReceiver(OTLPReceiver):
    """The tracing tests' collector, also keeping every export request as sent."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[bytes] = []

    async def _export(self, request: Request) -> Response:
        self.raw.append(await request.body())
        return await super()._export(request)


class CeleryEvents:
    """Every Celery event of the deployment (what Flower reads), captured in a thread."""

    def __init__(self, cluster: Cluster) -> None:
        self.app = cluster.client.app
        self.seen: list[dict[str, Any]] = []
        self._receiver: Any = None
        self._thread = threading.Thread(target=self._capture, daemon=True)

    def _capture(self) -> None:
        with self.app.connection_for_read() as conn:
            self._receiver = self.app.events.Receiver(conn, handlers={"*": self.seen.append})
            self._receiver.capture(limit=None, timeout=None, wakeup=True)

    def start(self) -> CeleryEvents:
        self._thread.start()
        deadline = time.monotonic() + 10
        while self._receiver is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        self._thread.join(timeout=5)


class Keyed(dspyq.Signature):
    """Answer the question."""

    question: str = dspyq.InputField()
    api_key: str = dspyq.InputField()
    password: str = dspyq.InputField()
    callback: str = dspyq.InputField()
    answer: str = dspyq.OutputField()


def _program() -> dspyq.Predict:
    return dspyq.Predict(Keyed.with_instructions(f"Answer the question. Use {INSTRUCTION_KEY}."))


def _inputs(question: str) -> dict[str, str]:
    return {
        "question": question,
        "api_key": INPUT_KEY,
        "password": INPUT_PASSWORD,
        "callback": f"https://bob:{URL_PASSWORD}@hooks.example.com/done",
    }


def _refused_lm_kwargs(cluster: Cluster) -> list[str]:
    """LM kwargs carrying secrets are refused at the edge, naming only the keys."""
    messages = []
    for lm_kwargs in (
        {"api_key": BEARER},
        {"extra_headers": {"Authorization": f"Bearer {BEARER}"}},
    ):
        with pytest.raises(InputError) as info:
            cluster.client.submit(
                _program(), lm="openai/m", lm_kwargs=lm_kwargs, **_inputs("refused")
            )
        messages.append(str(info.value))
    return messages


def test_secrets_planted_everywhere_are_found_nowhere(
    tmp_path: Path, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    database_url = postgres_url.replace("postgres@", f"postgres:{DB_PASSWORD}@", 1)
    collector = RawOTLPReceiver().start()
    otlp = collector.endpoint.replace("http://", f"http://spans:{OTLP_PASSWORD}@", 1)
    caplog.set_level(logging.DEBUG)
    try:
        with running_cluster(
            tmp_path,
            database_url,
            latency=0.0,
            DSPYQ_PROVIDERS__OPENAI__NUM_RETRIES="0",
            DSPYQ_PROVIDERS__OPENAI__BREAKER_FAIL_MAX="100",
            DSPYQ_TELEMETRY__OTLP_ENDPOINT=otlp,
            OTEL_BSP_SCHEDULE_DELAY="100",
        ) as cluster:
            server = cluster.fake_lm
            server.configure(api_key=SECRET_KEY)  # the provider checks the key it is sent
            server.answer_fields({"answer": "ok"}, match="good")
            cluster.start_worker("w1", concurrency=2)
            events = CeleryEvents(cluster).start()
            cluster.client.app.control.enable_events()
            refusals = _refused_lm_kwargs(cluster)

            good = cluster.client.submit(_program(), lm="openai/m", **_inputs("good"))
            assert good.result(timeout=30).answer == "ok"
            server.fail_next(1, 500, message=f"upstream said api_key={INPUT_KEY}")
            failing = cluster.client.submit(_program(), lm="openai/m", **_inputs("fails"))
            with pytest.raises(DspyqError) as failed:
                failing.result(timeout=30)
            batch = cluster.client.map(_program(), [_inputs("good batch")] * 3, lm="openai/m")
            assert [job.result(timeout=30).answer for job in batch] == ["ok"] * 3
            time.sleep(1.5)  # the last task events and span exports arrive
            events.stop()
            # The secrets were really there to leak: the provider got the key and inputs.
            assert all(r["had_key"] for r in server.requests)
            assert INPUT_KEY in str(server.requests[0]["body"])

            places = {
                "redis": cluster.redis_dump(),
                "sql": _sql_dump(database_url),
                "worker log": (tmp_path / "worker-w1.log").read_text(errors="replace"),
                "client log": caplog.text,
                "celery events": repr(events.seen),
                "spans": b"\n".join(collector.raw).decode("utf-8", errors="replace"),
                "errors raised to the caller": "\n".join([*refusals, str(failed.value)]),
            }
    finally:
        collector.stop()

    found = {
        (secret_name, place)
        for place, text in places.items()
        for secret_name, secret in PLANTED.items()
        if secret in text or secret[4:20] in text
    }
    print(f"secrets planted: {len(PLANTED)}, places searched: {len(places)}, found: {len(found)}")
    for secret_name, place in sorted(found):
        print(f"  {secret_name} in {place}")
    # The search finds what is there: the jobs, their answers, their arguments, spans.
    assert "celery-task-meta" in places["redis"] and "'ok'" in places["sql"]
    kwargs_shown = [e.get("kwargs", "") for e in events.seen if e.get("type") == "task-received"]
    assert kwargs_shown and all("'api_key': '***'" in k for k in kwargs_shown)
    assert any(e.get("type") == "task-sent" for e in events.seen)
    assert "lm openai/m" in places["spans"]
    assert found == set()

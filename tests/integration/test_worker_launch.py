"""``dspyq worker`` as a real process: it joins the broker, serves its pool's queue, stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from dspyq.settings import Settings
from dspyq.tasks.app import make_app

pytestmark = pytest.mark.integration

BROKER_DB = 11


@pytest.fixture
def app(broker_url: str) -> Iterator[Celery]:
    celery_app = make_app(Settings(broker_url=broker_url))
    yield celery_app
    celery_app.close()


def _start_worker(tmp_path: Path, broker_url: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "DSPYQ_BROKER_URL": broker_url}
    for name in ("DSPYQ_REDIS_URL", "DSPYQ_DATABASE_URL"):
        env.pop(name, None)
    return subprocess.Popen(
        [sys.executable, "-m", "dspyq", "worker", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_pong(app: Celery, hostname: str, worker: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert worker.poll() is None, worker.communicate()[0]
        replies = app.control.inspect(destination=[hostname], timeout=0.5).ping() or {}
        if replies.get(hostname) == {"ok": "pong"}:
            return
    raise AssertionError(f"{hostname} did not answer a ping within 30 s")


def _stop(worker: subprocess.Popen[str]) -> str:
    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=30)
    return output


def _queues(app: Celery, hostname: str) -> list[str]:
    active: dict[str, Any] = app.control.inspect(destination=[hostname], timeout=2).active_queues()
    return [queue["name"] for queue in active[hostname]]


def test_worker_answers_ping_on_its_pool_queue_and_stops_on_sigterm(
    tmp_path: Path, broker_url: str, app: Celery
) -> None:
    hostname = f"openai-{uuid.uuid4().hex[:8]}@test"
    worker = _start_worker(tmp_path, broker_url, "--pool", "openai", "--hostname", hostname)
    try:
        _wait_for_pong(app, hostname, worker)
        assert _queues(app, hostname) == ["dspyq.lm.openai"]
        stats = app.control.inspect(destination=[hostname], timeout=2).stats()[hostname]
        assert stats["pool"]["max-concurrency"] == 8
        assert "ThreadPoolExecutor" in stats["pool"]["implementation"] or "thread" in str(
            stats["pool"]
        )
    finally:
        output = _stop(worker)
    assert worker.returncode == 0, output
    assert "Warm shutdown" in output
    # The SQL schema was created at start, in the working directory's SQLite.
    with sqlite3.connect(tmp_path / "dspyq.db") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert {"executions", "events", "lm_requests"} <= tables
    assert app.control.inspect(destination=[hostname], timeout=0.5).ping() is None


def test_optimize_pool_defaults_to_two_slots_and_a_host_named_node(
    tmp_path: Path, broker_url: str, app: Celery
) -> None:
    worker = _start_worker(tmp_path, broker_url, "--pool", "optimize", "--loglevel", "warning")
    hostname = f"optimize@{os.uname().nodename}"
    try:
        _wait_for_pong(app, hostname, worker)
        assert _queues(app, hostname) == ["dspyq.optimize"]
        stats = app.control.inspect(destination=[hostname], timeout=2).stats()[hostname]
        assert stats["pool"]["max-concurrency"] == 2
    finally:
        output = _stop(worker)
    assert worker.returncode == 0, output


def test_prefork_installs_the_runtime_in_every_child_process(
    tmp_path: Path, broker_url: str, app: Celery
) -> None:
    hostname = f"prefork-{uuid.uuid4().hex[:8]}@test"
    worker = _start_worker(
        tmp_path,
        broker_url,
        "--pool", "local",
        "--exec-pool", "prefork",
        "--concurrency", "2",
        "--hostname", hostname,
    )  # fmt: skip
    try:
        _wait_for_pong(app, hostname, worker)
        stats = app.control.inspect(destination=[hostname], timeout=2).stats()[hostname]
        assert len(stats["pool"]["processes"]) == 2
    finally:
        output = _stop(worker)
    assert worker.returncode == 0, output
    installed = {
        line.split("/")[1].split("]")[0]
        for line in output.splitlines()
        if line.endswith("worker runtime installed")
    }
    assert installed == {"ForkPoolWorker-1", "ForkPoolWorker-2"}


def test_unusable_database_fails_the_worker_before_it_takes_jobs(
    tmp_path: Path, broker_url: str
) -> None:
    env = {
        **os.environ,
        "DSPYQ_BROKER_URL": broker_url,
        "DSPYQ_DATABASE_URL": "mysql://nobody@127.0.0.1/db",
    }
    result = subprocess.run(
        [sys.executable, "-m", "dspyq", "worker", "--pool", "local"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "unsupported database 'mysql'" in result.stderr
    assert "Traceback" not in result.stderr

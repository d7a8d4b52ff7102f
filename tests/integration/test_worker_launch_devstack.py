"""DevStack, the Python API behind ``dspyq dev``: real Redis, fake LM, workers and Flower."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from process_fixtures import free_port

from dspyq.errors import DspyqError
from dspyq.settings import Settings
from dspyq.tasks.app import make_app
from dspyq.workers.dev import DevStack
from dspyq.workers.embedded_redis import redis_reachable

pytestmark = pytest.mark.integration

BROKER_DB = 13


def _gone(pid: int) -> bool:
    """True when neither the process nor anything left in its process group exists."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_dev_stack_starts_fake_lm_workers_watcher_and_flower_then_stops_every_child(
    tmp_path: Path, broker_url: str
) -> None:
    settings = Settings(broker_url=broker_url, database_url="sqlite:///dspyq.db")
    stack = DevStack(
        settings,
        pools=["openai", "anthropic"],
        concurrency=2,
        flower_port=0,
        fake_lm_port=0,
        flower_auth="tester:s3cret",
        workdir=tmp_path,
    )
    stack.start()
    pids = [child.process.pid for child in stack.children]
    try:
        stack.wait_ready(timeout=60)
        assert {child.name for child in stack.children} == {
            "fake-lm",
            "worker-openai",
            "worker-anthropic",
            "watch",
            "flower",
        }

        flower = httpx.get(f"{stack.flower_url}/", auth=("tester", "s3cret"), timeout=5)
        assert flower.status_code == 200
        assert httpx.get(f"{stack.flower_url}/", timeout=5).status_code == 401
        models = httpx.get(f"{stack.fake_lm_url}/v1/models", timeout=5)
        assert models.status_code == 200

        app = make_app(settings)
        try:
            nodes = sorted(stack.worker_hostnames.values())
            replies = app.control.inspect(destination=nodes, timeout=2).active_queues() or {}
        finally:
            app.close()
        queues = {node: [q["name"] for q in found] for node, found in replies.items()}
        assert queues == {
            stack.worker_hostnames["openai"]: ["dspyq.lm.openai"],
            stack.worker_hostnames["anthropic"]: ["dspyq.lm.anthropic"],
        }
        # Every provider of the children points at the fake LM, with a dummy key.
        env = stack.child_env()
        assert env["DSPYQ_PROVIDERS__OPENAI__API_BASE"] == f"{stack.fake_lm_url}/v1"
        assert env["DSPYQ_PROVIDERS__ANTHROPIC__API_BASE"] == stack.fake_lm_url
        assert env["DSPYQ_PROVIDERS__LOCAL__API_KEY"] == "dspyq-dev-fake-key"
        assert (tmp_path / "dspyq.db").exists()
    finally:
        stack.stop()
    assert stack.children == []
    assert all(_gone(pid) for pid in pids)


def test_dev_stack_starts_and_stops_its_own_redis_when_none_answers(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    settings = Settings(broker_url=url, database_url="sqlite:///dspyq.db")
    stack = DevStack(settings, pools=["optimize"], flower_port=0, fake_lm=False, workdir=tmp_path)
    try:
        stack.start()
        assert len(stack.redis_servers) == 1
        stack.wait_ready(timeout=60)
        assert stack.fake_lm_url is None
        assert [child.name for child in stack.children] == ["worker-optimize", "watch", "flower"]
    finally:
        stack.stop()
    assert not redis_reachable(url)
    # Its data (append-only, so queued jobs survive a restart) is in the working directory.
    assert any(p.name.startswith("appendonly") for p in (tmp_path / ".dspyq" / "redis").iterdir())


def test_dev_stack_reports_a_worker_that_dies_at_start(tmp_path: Path, broker_url: str) -> None:
    settings = Settings(
        broker_url=broker_url, database_url="postgresql://nobody:pw@127.0.0.1:1/none"
    )
    stack = DevStack(settings, pools=["local"], flower_port=0, fake_lm=False, workdir=tmp_path)
    try:
        stack.start()
        # The worker and the watcher both need the database: whichever dies first is named.
        with pytest.raises(DspyqError, match=r"(worker-local|watch) exited with code 1") as caught:
            stack.wait_ready(timeout=60)
        assert "unavailable" in str(caught.value)  # the tail of the process's own log
    finally:
        stack.stop()


def test_dev_stack_refuses_an_unknown_pool_before_starting_anything(tmp_path: Path) -> None:
    with pytest.raises(DspyqError, match="unknown pool 'bogus'"):
        DevStack(Settings(), pools=["openai", "bogus"], workdir=tmp_path)
    assert not (tmp_path / ".dspyq").exists()

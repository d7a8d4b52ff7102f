"""A real little dspyq deployment on one machine, for tests and benchmarks.

Worker processes (``python -m dspyq worker``), one fake LM server, a Redis key prefix of
its own (queues, results, limiter, breaker, cache) and a database of its own, so runs
never see each other's data. Nothing in it is mocked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from dspyq.api_client import Client
from dspyq.resilience.redis_client import redis_from_url
from dspyq.settings import Settings
from dspyq.testing import FakeLMServer

REDIS_URL = os.environ.get("DSPYQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SECRET_KEY = "sk-planted-secret-1234567890"


class Cluster:
    """Workers as separate processes, all pointed at one fake LM, prefix and database."""

    def __init__(
        self,
        tmp_path: Path,
        fake_lm: FakeLMServer,
        database_url: str,
        redis_url: str | None = None,
        broker_url: str | None = None,
        prefix: str | None = None,
        **env: str,
    ) -> None:
        self.tmp_path = tmp_path
        self.fake_lm = fake_lm
        self.redis_url = redis_url or REDIS_URL  # a private server (password, TLS, restarts)
        self.broker_url = broker_url or self.redis_url  # RabbitMQ, or the same Redis
        self.prefix = prefix or f"dspyqt{uuid.uuid4().hex[:10]}"
        self.env = {
            **os.environ,
            "DSPYQ_BROKER_URL": self.broker_url,
            "DSPYQ_KEY_PREFIX": self.prefix,
            "DSPYQ_DATABASE_URL": database_url,
            "DSPYQ_PROVIDERS__OPENAI__API_BASE": fake_lm.openai_base,
            "DSPYQ_PROVIDERS__OPENAI__API_KEY": SECRET_KEY,
            "DSPYQ_PROVIDERS__ANTHROPIC__API_BASE": fake_lm.anthropic_base,
            "DSPYQ_PROVIDERS__ANTHROPIC__API_KEY": SECRET_KEY,
            "DSPYQ_PROVIDERS__OPENAI__RATE_LIMIT": "100000/m",
            "DSPYQ_PROVIDERS__ANTHROPIC__RATE_LIMIT": "100000/m",
            **({"DSPYQ_REDIS_URL": self.redis_url} if broker_url else {}),
            **env,
        }
        self.settings = Settings(
            broker_url=self.broker_url,
            redis_url=self.redis_url if broker_url else None,
            key_prefix=self.prefix,
            database_url=database_url,
        )
        self.client = Client(self.settings)
        self.workers: dict[str, subprocess.Popen[bytes]] = {}

    def start_worker(
        self, name: str, pool: str = "openai", concurrency: int = 4, wait: bool = True
    ) -> subprocess.Popen[bytes]:
        log = open(self.tmp_path / f"worker-{name}.log", "ab")  # noqa: SIM115 - kept by Popen
        process = subprocess.Popen(
            [
                sys.executable, "-m", "dspyq", "worker",
                "--pool", pool,
                "--concurrency", str(concurrency),
                "--hostname", f"{name}@%h",
                "--loglevel", "info",
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill -9 takes all of it
        )  # fmt: skip
        self.workers[name] = process
        if wait:
            self.wait_ready(name)
        return process

    def wait_ready(self, name: str, timeout: float = 45.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self.workers[name]
            if process.poll() is not None:
                raise AssertionError(f"worker {name} exited early:\n{self.log(name)}")
            replies = self.client.app.control.ping(timeout=0.5)
            if any(name in host.split("@")[0] for reply in replies for host in reply):
                return
        raise AssertionError(f"worker {name} not ready in {timeout} s:\n{self.log(name)}")

    def log(self, name: str) -> str:
        return (self.tmp_path / f"worker-{name}.log").read_text(errors="replace")[-4000:]

    def kill(self, name: str) -> None:
        """SIGKILL the worker's whole process group: no warm shutdown, no acks."""
        process = self.workers.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self) -> None:
        for process in self.workers.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.workers.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        self.workers.clear()
        if not self.settings.broker_is_redis:
            delete_queues(self.client)
        self.client.close()
        try:
            r = redis_from_url(self.redis_url, check=False)
            keys = list(r.scan_iter(f"{self.prefix}*", count=1000))
            if keys:
                r.delete(*keys)
        except redis.ConnectionError:  # a private server the test already stopped
            pass

    def redis_dump(self) -> str:
        """Every value under this cluster's prefix, as text (to search for secrets)."""
        r = redis_from_url(self.redis_url, check=False)
        chunks: list[str] = []
        for key in r.scan_iter(f"{self.prefix}*", count=1000):
            raw_kind = r.type(key)
            kind = raw_kind.decode() if isinstance(raw_kind, bytes) else str(raw_kind)
            value: Any
            if kind == "string":
                value = r.get(key)
            elif kind == "list":
                value = r.lrange(key, 0, -1)
            elif kind == "hash":
                value = r.hgetall(key)
            elif kind == "zset":
                value = r.zrange(key, 0, -1)
            elif kind == "set":
                value = r.smembers(key)
            else:
                value = b""
            chunks.append(f"{key!r} {value!r}")
        return "\n".join(chunks)


def delete_queues(client: Client) -> None:
    """Delete the deployment's queues from a RabbitMQ broker (Redis ones go with the keys)."""
    from dspyq.workers.launch import pool_queue, worker_pools

    with client.app.connection_for_write() as connection:
        for pool in worker_pools(client.settings):
            channel = connection.channel()
            try:
                channel.queue_delete(client.app.amqp.queues[pool_queue(pool)].name)
            except connection.channel_errors:
                pass  # never declared
            finally:
                try:
                    channel.close()
                except connection.channel_errors + connection.connection_errors:
                    pass


def make_cluster(
    tmp_path: Path,
    database_url: str,
    latency: float = 0.05,
    redis_url: str | None = None,
    broker_url: str | None = None,
    **env: str,
) -> tuple[Cluster, FakeLMServer]:
    server = FakeLMServer(latency=latency).start()
    return Cluster(tmp_path, server, database_url, redis_url, broker_url, **env), server


@contextmanager
def running_cluster(
    tmp_path: Path,
    database_url: str,
    latency: float = 0.05,
    redis_url: str | None = None,
    broker_url: str | None = None,
    **env: str,
) -> Iterator[Cluster]:
    """A :func:`make_cluster` deployment for the block; its workers and fake LM stop after."""
    cluster, server = make_cluster(tmp_path, database_url, latency, redis_url, broker_url, **env)
    try:
        yield cluster
    finally:
        cluster.stop()
        server.stop()

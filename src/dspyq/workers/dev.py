"""The one-command development stack behind ``dspyq dev``.

:class:`DevStack` brings up everything a laptop needs to run dspyq distributed:
Redis (an embedded one when none answers at the broker URL), the fake LM server,
one ``dspyq worker`` process per pool, the performance watcher (``dspyq watch``) and Flower; SQLite lives in the working
directory. Children are separate processes (``python -m dspyq ...``) that get their
settings through ``DSPYQ_*`` environment variables, and write their output to
``.dspyq/logs/<name>.log``. With the fake LM on, every provider's ``api_base``
points at it and its API key is a dummy, so no real key ever leaves the machine.

::

    with DevStack(get_settings(), pools=["openai", "optimize"]) as stack:
        stack.wait_ready(timeout=60)
        ...  # submit jobs
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx
from celery import Celery
from kombu.exceptions import OperationalError

from dspyq.errors import ConfigurationError, DspyqError
from dspyq.resilience.redis_client import redacted_url
from dspyq.settings import Settings
from dspyq.tasks.app import make_app
from dspyq.workers.dev_console import run_foreground, stack_panel
from dspyq.workers.embedded_redis import EmbeddedRedis, ensure_redis
from dspyq.workers.launch import WorkerSpec, worker_spec

__all__ = ["DevStack", "ensure_port_free", "free_port", "run_foreground", "stack_panel"]

DEFAULT_POOLS = ("openai", "anthropic", "local", "optimize")
FAKE_LM_API_KEY = "dspyq-dev-fake-key"
CELERY_APP_MODULE = "dspyq.tasks.celery_app"
STATE_DIR = ".dspyq"


def ensure_port_free(host: str, port: int, what: str) -> None:
    """Raise :class:`ConfigurationError` when ``port`` cannot be bound on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers set SO_REUSEADDR too, so a port in TIME_WAIT counts as free here as well.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigurationError(
                f"port {port} on {host} is already in use ({exc.strerror}); "
                f"stop what listens there or choose another port for {what}",
                context={"host": host, "port": port, "service": what},
            ) from None


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (for ``port=0``)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class Child:
    """One process of the stack and where its output goes."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class DevStack:
    """Redis, the fake LM, one worker per pool, the watcher and Flower, started and
    stopped together.

    ``settings`` give the broker and database URLs and the providers; they reach the
    children as environment variables (settings made in code beyond those do not).
    A port of 0 picks a free one. ``flower_auth`` is ``user:password``; by default it
    comes from ``FLOWER_BASIC_AUTH`` or a random password is made.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        pools: Sequence[str] = DEFAULT_POOLS,
        concurrency: int | None = None,
        flower_port: int = 5555,
        fake_lm_port: int = 8000,
        fake_lm: bool = True,
        flower_auth: str | None = None,
        workdir: Path | None = None,
        host: str = "127.0.0.1",
        loglevel: str = "info",
        watch: bool = True,
    ) -> None:
        if not pools:
            raise ConfigurationError("the dev stack needs at least one worker pool")
        self.settings = settings
        self.specs: list[WorkerSpec] = [
            worker_spec(settings, pool, concurrency=concurrency, loglevel=loglevel)
            for pool in dict.fromkeys(pools)
        ]
        self.host = host
        self.flower_port = flower_port or free_port(host)
        self.fake_lm_port = fake_lm_port or free_port(host)
        self.fake_lm = fake_lm
        self.watch = watch  # the performance watcher, `dspyq watch`
        given = flower_auth or os.environ.get("FLOWER_BASIC_AUTH")
        self.flower_auth_generated = not given
        self.flower_auth = given or f"dspyq:{secrets.token_urlsafe(12)}"
        if ":" not in self.flower_auth:
            raise ConfigurationError("Flower's basic auth must look like user:password")
        self.workdir = (workdir or Path.cwd()).resolve()
        self.state_dir = self.workdir / STATE_DIR
        self.log_dir = self.state_dir / "logs"
        self.children: list[Child] = []
        self.redis_servers: list[EmbeddedRedis] = []
        self._log_files: list[IO[bytes]] = []

    # --- addresses -------------------------------------------------------------------

    @property
    def flower_url(self) -> str:
        return f"http://{self.host}:{self.flower_port}"

    @property
    def fake_lm_url(self) -> str | None:
        return f"http://{self.host}:{self.fake_lm_port}" if self.fake_lm else None

    @property
    def broker_url(self) -> str:
        """The broker URL with its password masked, for display."""
        return redacted_url(self.settings.broker_url)

    @property
    def worker_hostnames(self) -> dict[str, str]:
        """Pool name -> the Celery node name of its worker."""
        return {spec.pool: spec.hostname for spec in self.specs}

    def child_env(self) -> dict[str, str]:
        """The environment of every child: this one plus the stack's settings."""
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env["DSPYQ_BROKER_URL"] = self.settings.broker_url
        env["DSPYQ_DATABASE_URL"] = self.settings.database_url
        if self.settings.redis_url:
            env["DSPYQ_REDIS_URL"] = self.settings.redis_url
        if self.fake_lm:
            for name, provider in self.settings.providers.items():
                base = (
                    self.fake_lm_url if provider.kind == "anthropic" else f"{self.fake_lm_url}/v1"
                )
                env[f"DSPYQ_PROVIDERS__{name.upper()}__API_BASE"] = str(base)
                env[f"DSPYQ_PROVIDERS__{name.upper()}__API_KEY"] = FAKE_LM_API_KEY
        return env

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start Redis if needed, then the fake LM, the workers and Flower; do not wait."""
        ports = [(self.flower_port, "Flower (--flower-port)")]
        if self.fake_lm:
            ports.append((self.fake_lm_port, "the fake LM (--fake-lm-port)"))
        for port, what in ports:
            ensure_port_free(self.host, port, what)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            redis_urls = [self.settings.effective_redis_url]
            if self.settings.broker_is_redis:
                redis_urls.insert(0, self.settings.broker_url)
            for url in dict.fromkeys(redis_urls):
                server = ensure_redis(url, self.state_dir / "redis")
                if server is not None:
                    self.redis_servers.append(server)
            env = self.child_env()
            python = [sys.executable, "-m", "dspyq"]
            if self.fake_lm:
                self._spawn(
                    "fake-lm",
                    [*python, "fake-lm", "--host", self.host, "--port", str(self.fake_lm_port)],
                    env,
                )
            for spec in self.specs:
                options = {
                    "--pool": spec.pool,
                    "--concurrency": str(spec.concurrency),
                    "--exec-pool": spec.exec_pool,
                    "--hostname": spec.hostname,
                    "--loglevel": spec.loglevel,
                }
                args = [*python, "worker", *(part for pair in options.items() for part in pair)]
                self._spawn(f"worker-{spec.pool}", args, env)
            if self.watch:
                self._spawn("watch", [*python, "watch"], env)
            flower = [sys.executable, "-m", "celery", "-A", CELERY_APP_MODULE, "flower"]
            flower += [f"--port={self.flower_port}", f"--address={self.host}"]
            # The login goes through the environment, not argv, where `ps` would show it.
            self._spawn("flower", flower, {**env, "FLOWER_BASIC_AUTH": self.flower_auth})
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until the fake LM and Flower answer HTTP and every worker answers a ping.

        Raises :class:`DspyqError` with the tail of its log when a child exits, or
        when the stack is not ready in time.
        """
        deadline = time.monotonic() + timeout
        pending_workers = set(self.worker_hostnames.values())
        user, _, password = self.flower_auth.partition(":")
        http_checks: dict[str, tuple[str, httpx.BasicAuth | None]] = {
            "flower": (f"{self.flower_url}/healthcheck", httpx.BasicAuth(user, password)),
        }
        if self.fake_lm:
            http_checks["fake-lm"] = (f"{self.fake_lm_url}/_fake/health", None)
        app = make_app(self.settings)
        try:
            while True:
                self._raise_for_exited()
                for name, (url, auth) in list(http_checks.items()):
                    if _answers(url, auth):
                        del http_checks[name]
                if pending_workers:
                    pending_workers -= _pong(app, pending_workers)
                if not http_checks and not pending_workers:
                    return
                if time.monotonic() > deadline:
                    waiting = sorted([*http_checks, *pending_workers])
                    raise DspyqError(
                        f"the dev stack was not ready within {timeout:.0f} s; still waiting "
                        f"for {', '.join(waiting)}; see the logs in {self.log_dir}",
                        context={"waiting_for": waiting},
                    )
                time.sleep(0.2)
        finally:
            app.close()

    def exited_child(self) -> Child | None:
        """A child that stopped on its own, if any (the stack is then broken)."""
        return next((child for child in self.children if not child.running()), None)

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the workers (warm shutdown), Flower, the fake LM, then any Redis started."""
        workers = [c for c in self.children if c.name.startswith("worker-")]
        others = [c for c in reversed(self.children) if c not in workers]
        _terminate(workers, timeout)
        _terminate(others, timeout)
        self.children.clear()
        for log in self._log_files:
            log.close()
        self._log_files.clear()
        for server in reversed(self.redis_servers):
            server.stop()
        self.redis_servers.clear()

    def __enter__(self) -> DevStack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- internals -------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log_path = self.log_dir / f"{name}.log"
        log = log_path.open("wb")
        self._log_files.append(log)
        # A session of its own: Ctrl-C in the terminal reaches only `dspyq dev`, which
        # then stops the children in order (workers first, so they finish their jobs).
        process = subprocess.Popen(
            args,
            cwd=self.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.children.append(Child(name=name, process=process, log_path=log_path))

    def _raise_for_exited(self) -> None:
        child = self.exited_child()
        if child is None:
            return
        raise DspyqError(
            f"{child.name} exited with code {child.process.returncode} while the dev stack "
            f"was starting; last lines of {child.log_path}:\n{child.log_tail()}",
            context={"child": child.name, "exit_code": child.process.returncode},
        )


def _pong(app: Celery, hostnames: set[str]) -> set[str]:
    """The workers among ``hostnames`` that answer a ping now (none while the broker is down)."""
    try:
        replies = app.control.ping(destination=sorted(hostnames), timeout=0.5, limit=len(hostnames))
    except OperationalError:
        return set()
    return {name for reply in replies for name in reply}


def _answers(url: str, auth: httpx.BasicAuth | None) -> bool:
    try:
        return httpx.get(url, auth=auth, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _terminate(children: Iterable[Child], timeout: float) -> None:
    """SIGTERM each child, wait for all up to ``timeout``, then kill their process groups."""
    children = list(children)
    for child in children:
        if child.running():
            child.process.terminate()
    deadline = time.monotonic() + timeout
    for child in children:
        remaining = max(0.0, deadline - time.monotonic())
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(timeout=remaining)
        # Whatever is left of its group (a prefork worker's children) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.process.pid, signal.SIGKILL)
        child.process.wait()

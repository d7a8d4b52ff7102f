"""A redis-server of a test's own on a free port: to restart, password-protect or TLS it.

The shared Redis on 6379 is used by every test running at once, so a test that needs
to stop the broker, or to run it with a password or TLS, starts one of these instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from dspyq.workers.embedded_redis import find_redis_server


def redis_server_binaries() -> list[str]:
    """Every redis-server on PATH (a venv may put one without TLS before the system's)."""
    found = [str(Path(d) / "redis-server") for d in os.environ.get("PATH", "").split(os.pathsep)]
    # Not resolved: Debian's redis-server is a link that acts by the name it is run as.
    unique = {str(Path(p).resolve()): p for p in reversed(found) if Path(p).is_file()}
    return list(reversed(unique.values()))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """One redis-server process; ``restart`` keeps its port and data directory."""

    def __init__(
        self,
        data_dir: Path,
        *args: str,
        password: str | None = None,
        binary: str | None = None,
    ) -> None:
        binary = binary or find_redis_server() or shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("no redis-server on this machine")
        self.binary = binary
        self.data_dir = data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.password = password
        self.extra_args = list(args)
        self.process: subprocess.Popen[bytes] | None = None
        self.tls = "--tls-port" in self.extra_args

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> PrivateRedis:
        args = [self.binary, "--bind", "127.0.0.1", "--dir", str(self.data_dir)]
        args += ["--port", "0", "--tls-port", str(self.port)] if self.tls else []
        args += [] if self.tls else ["--port", str(self.port)]
        args += [a for a in self.extra_args if a != "--tls-port"]
        if self.password:
            args += ["--requirepass", self.password]
        log = open(self.data_dir / "redis.log", "ab")  # noqa: SIM115 - kept by Popen
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError((self.data_dir / "redis.log").read_text()[-2000:])
            with socket.socket() as sock:
                up = sock.connect_ex(("127.0.0.1", self.port)) == 0
            if up and (self.tls or self._loaded()):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on {self.port} not up in {timeout} s")

    def _loaded(self) -> bool:
        try:
            info = redis.Redis.from_url(self.url).info("persistence")
        except (redis.ConnectionError, redis.ResponseError):
            return False  # still loading its append-only file
        return not info.get("loading", 0)

    def stop(self) -> None:
        """SIGTERM: Redis flushes its append-only file and exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)
        self.process = None

    def kill(self) -> None:
        """SIGKILL: no shutdown, only what was already fsynced survives."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=15)
        self.process = None

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

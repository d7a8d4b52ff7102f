"""A Redis master, one replica and three sentinels of a test's own, on free ports.

Sentinel decides fast here (down after 1 s, quorum 2) so a failover takes a few
seconds, not the default half minute.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis
from private_redis import PrivateRedis, free_port

MASTER_NAME = "dspyqtest"


class SentinelSetup:
    """``master`` replicated to ``replica``, watched by three sentinels."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.master = PrivateRedis(data_dir / "master")
        self.replica = PrivateRedis(data_dir / "replica")
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        chunks = [f"sentinel://127.0.0.1:{port}" for port in self.sentinel_ports]
        return ";".join(chunks) + f"/0?master_name={MASTER_NAME}"

    def start(self) -> SentinelSetup:
        self.master.start()
        self.replica.extra_args = ["--replicaof", "127.0.0.1", str(self.master.port)]
        self.replica.start()
        for port in self.sentinel_ports:
            folder = self.data_dir / f"sentinel-{port}"
            folder.mkdir(parents=True)
            conf = folder / "sentinel.conf"  # Sentinel rewrites it: one file each
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
                f"sentinel failover-timeout {MASTER_NAME} 5000\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
            log = open(folder / "sentinel.log", "ab")  # noqa: SIM115 - kept by Popen
            self.sentinels.append(
                subprocess.Popen(
                    [self.master.binary, str(conf), "--sentinel"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        self._wait(lambda: self.replica_synced() and self.sentinels_see_replica(), 20)
        return self

    def sentinel(self, index: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.sentinel_ports[index], socket_timeout=2)

    def master_port(self) -> int:
        """The master's port as the first sentinel names it."""
        _, port = self.sentinel().sentinel_get_master_addr_by_name(MASTER_NAME)
        return int(port)

    def replica_synced(self) -> bool:
        try:
            info = redis.Redis.from_url(self.replica.url).info("replication")
        except redis.ConnectionError:
            return False
        return info.get("master_link_status") == "up"

    def sentinels_see_replica(self) -> bool:
        try:
            return all(
                len(self.sentinel(i).sentinel_slaves(MASTER_NAME)) == 1
                and int(self.sentinel(i).sentinel_master(MASTER_NAME)["num-other-sentinels"]) == 2
                for i in range(3)
            )
        except redis.RedisError:
            return False

    def wait_failover(self, timeout: float = 30.0) -> float:
        """Seconds until every sentinel names the replica as the master."""
        started = time.monotonic()
        self._wait(
            lambda: all(
                int(self.sentinel(i).sentinel_get_master_addr_by_name(MASTER_NAME)[1])
                == self.replica.port
                for i in range(3)
            ),
            timeout,
        )
        return time.monotonic() - started

    def stop(self) -> None:
        for process in self.sentinels:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        self.master.kill()
        self.replica.kill()

    @staticmethod
    def _wait(done: object, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():  # type: ignore[operator]
                return
            time.sleep(0.1)
        raise AssertionError(f"sentinel setup not ready in {timeout} s")

"""How many admissions (breaker + limiter, one Lua script) a single Redis can serve.

Every LM call a worker makes first runs the admission script (``RedisProviderGate.run``:
the breaker and the limiter asked in one round trip). This starts a redis-server of its
own on a free port, then ``--procs`` client processes of ``--threads`` threads each call
the real admission path as fast as they can for ``--seconds`` on one provider (one pool:
one limiter key, the hottest case). Redis is single-threaded, so what it can serve is
bounded by one core: the figure reported is admissions per second of Redis CPU (from
``INFO cpu``), i.e. the rate at which a dedicated Redis core would be saturated, next
to the rate reached here and Redis's CPU share during it.

    python bench/bench_limiter_ops.py --procs 3 --threads 8 --seconds 8 --rounds 3
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from typing import Any

import redis

from dspyq.resilience.gate import RedisProviderGate
from dspyq.settings import Settings

PROVIDER_CONF = {"api_base": "http://127.0.0.1:9/v1", "rate_limit": "100000000/s"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def client(url: str, threads: int, seconds: float, start: Any, counts: Any, index: int) -> None:
    conn = redis.Redis.from_url(url, max_connections=threads + 2)
    gate = RedisProviderGate(conn, Settings(providers={"openai": PROVIDER_CONF}), key_prefix="b")
    gate.load_scripts("openai")
    done = [0] * threads
    start.wait()
    stop_at = time.monotonic() + seconds

    def loop(slot: int) -> None:
        while time.monotonic() < stop_at:
            gate.run("openai", 0, lambda: None)
            done[slot] += 1

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    counts[index] = sum(done)


def redis_cpu(conn: redis.Redis) -> float:
    info = conn.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def commands(conn: redis.Redis) -> int:
    return sum(int(v["calls"]) for v in conn.info("commandstats").values())


def one_round(url: str, procs: int, threads: int, seconds: float) -> dict[str, float]:
    conn = redis.Redis.from_url(url)
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    counts = ctx.Array("q", procs)
    children = [
        ctx.Process(target=client, args=(url, threads, seconds, start, counts, i))
        for i in range(procs)
    ]
    for child in children:
        child.start()
    time.sleep(3.0)  # spawned interpreters import dspyq before the clock starts
    cpu0, cmd0, t0 = redis_cpu(conn), commands(conn), time.monotonic()
    start.set()
    for child in children:
        child.join()
    wall = time.monotonic() - t0
    cpu, cmds = redis_cpu(conn) - cpu0, commands(conn) - cmd0
    ops = sum(counts)
    return {
        "ops_per_s": ops / seconds,
        "redis_cpu_share": cpu / wall,
        "ops_per_redis_cpu_s": ops / cpu,
        "commands_per_op": cmds / max(ops, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        server = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", folder],
            stdout=subprocess.DEVNULL,
        )
        try:
            url = f"redis://127.0.0.1:{port}/0"
            for _ in range(100):
                try:
                    redis.Redis.from_url(url).ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            rounds = [
                one_round(url, args.procs, args.threads, args.seconds) for _ in range(args.rounds)
            ]
        finally:
            server.terminate()
            server.wait(timeout=10)
    for i, r in enumerate(rounds):
        print(
            f"round {i}: {r['ops_per_s']:.0f} admissions/s, Redis CPU {r['redis_cpu_share']:.0%}, "
            f"{r['ops_per_redis_cpu_s']:.0f} admissions per Redis CPU-second, "
            f"{r['commands_per_op']:.2f} Redis commands per admission"
        )
    best = statistics.median(r["ops_per_redis_cpu_s"] for r in rounds)
    print(f"median: one Redis core saturates at ~{best:.0f} admissions/s")


if __name__ == "__main__":
    main()

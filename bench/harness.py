"""What every benchmark shares: a fake LM in its own process, a cluster, batches, figures.

The deployment itself is :class:`dspyq.testing.cluster.Cluster` (worker processes, own
Redis key prefix, own database); this module adds what benchmarks need beside it:

- :class:`FakeLMProcess`: the fake LM as a separate process (``python -m dspyq
  fake-lm``), so serving it does not share a GIL with the benchmark's client;
- :class:`BenchCluster`: a cluster whose workers can be given an execution pool;
- :func:`bench_database`: a fresh SQLite file or PostgreSQL database for one run;
- :func:`run_batch`: submit jobs, wait for every result, and time each of them;
- :class:`Report`: the figures, printed with the command that produced them.

Every process started here is stopped in a ``finally``; every wait has a deadline.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import psycopg
from celery import Celery
from psycopg import sql
from sqlalchemy.engine import make_url

from dspyq.tasks.app import lm_queue
from dspyq.testing import FakeLMServer
from dspyq.testing.cluster import Cluster

POSTGRES_ADMIN_URL = os.environ.get(
    "DSPYQ_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
ROOT = Path(__file__).resolve().parents[1]


def command_line() -> str:
    """The command that is running, as it could be typed again from the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = str(script.relative_to(ROOT))
    except ValueError:
        shown = str(script)
    return shlex.join(["python", shown, *sys.argv[1:]])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get_json(url: str, timeout: float = 30.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _post_json(url: str, payload: Any, timeout: float = 10.0) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


class FakeLMProcess:
    """``python -m dspyq fake-lm`` in its own process (one uvicorn process, asyncio)."""

    def __init__(self, log_dir: Path, latency: float = 0.0) -> None:
        self.latency = latency
        self.host = "127.0.0.1"
        self.port = free_port()
        self.log_path = log_dir / "fake-lm.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> FakeLMProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept by Popen
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "dspyq", "fake-lm",
                "--port", str(self.port),
                "--latency", str(self.latency),
                "--log-level", "warning",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the fake LM exited:\n{self.log_path.read_text()[-2000:]}")
            try:
                _get_json(f"{self.url}/_fake/health", timeout=1.0)
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the fake LM did not answer within {timeout} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self.process = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_base(self) -> str:
        return self.url

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The server's request log (each entry has ``time``: arrival, epoch seconds)."""
        return cast(list[dict[str, Any]], _get_json(f"{self.url}/_fake/requests"))

    def configure(self, **changes: Any) -> None:
        _post_json(f"{self.url}/_fake/config", changes)


class BenchCluster(Cluster):
    """A :class:`Cluster` whose workers may use any Celery execution pool."""

    def __init__(
        self, tmp_path: Path, fake_lm: FakeLMProcess, database_url: str, **env: str
    ) -> None:
        # Cluster only reads the fake LM's addresses, which FakeLMProcess has too.
        super().__init__(tmp_path, cast(FakeLMServer, fake_lm), database_url, **env)
        self.fake_process = fake_lm
        self.keep_logs = False  # set when a run went wrong without raising

    def start_worker(
        self,
        name: str,
        pool: str = "openai",
        concurrency: int = 4,
        wait: bool = True,
        exec_pool: str = "threads",
    ) -> subprocess.Popen[bytes]:
        return self.start_command(
            name,
            [
                sys.executable, "-m", "dspyq", "worker",
                "--pool", pool,
                "--concurrency", str(concurrency),
                "--exec-pool", exec_pool,
                "--hostname", f"{name}@%h",
                "--loglevel", "warning",
            ],
            wait=wait,
        )  # fmt: skip

    def start_workers(
        self, count: int, concurrency: int, exec_pool: str = "threads", pool: str = "openai"
    ) -> list[str]:
        """Start ``count`` dspyq workers (gevent ones through ``bench/gevent_worker.py``)."""
        names = []
        for n in range(count):
            name = f"{exec_pool}{n}"
            if exec_pool == "gevent":
                argv = [sys.executable, str(ROOT / "bench" / "gevent_worker.py")]
            else:
                argv = [sys.executable, "-m", "dspyq"]
            argv += [
                "worker",
                "--pool", pool,
                "--concurrency", str(concurrency),
                "--exec-pool", exec_pool,
                "--hostname", f"{name}@%h",
                "--loglevel", "warning",
            ]  # fmt: skip
            self.start_command(name, argv)
            names.append(name)
        return names

    def start_bare_workers(
        self, prefix: str, count: int, concurrency: int, exec_pool: str = "threads"
    ) -> list[str]:
        """Start ``count`` bare Celery workers of ``bench/noop_app.py`` on the openai pool's
        queue, under the same environment and app configuration as dspyq's workers."""
        names = []
        for n in range(count):
            name = f"{prefix}{n}"
            self.start_command(
                name,
                [
                    sys.executable, "-m", "celery", "-A", "noop_app", "worker",
                    "-Q", lm_queue("openai"),
                    "-c", str(concurrency),
                    "-P", exec_pool,
                    "--hostname", f"{name}@%h",
                    "--loglevel", "warning",
                ],
                PYTHONPATH="bench",
            )  # fmt: skip
            names.append(name)
        return names

    def stop_workers(self) -> None:
        for name in list(self.workers):
            self.stop_worker(name)

    def worker_rss_mb(self) -> float:
        """Resident memory of all worker processes (children included), in MiB."""
        groups = {p.pid for p in self.workers.values()}
        total = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                raw = (entry / "stat").read_text()
                if int(raw[raw.rindex(")") + 2 :].split()[2]) not in groups:
                    continue
                pages = int((entry / "statm").read_text().split()[1])
            except (OSError, ValueError):
                continue
            total += pages * os.sysconf("SC_PAGE_SIZE")
        return round(total / 2**20, 1)

    def start_command(
        self, name: str, argv: list[str], wait: bool = True, **env: str
    ) -> subprocess.Popen[bytes]:
        """Start any Celery worker command under this cluster's environment."""
        log = open(self.tmp_path / f"worker-{name}.log", "ab")  # noqa: SIM115 - kept by Popen
        process = subprocess.Popen(
            argv,
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )
        self.workers[name] = process
        if wait:
            self.wait_ready(name, timeout=60.0)
        return process

    def stop_worker(self, name: str, timeout: float = 30.0) -> None:
        """Warm shutdown (SIGTERM to its process group); SIGKILL after ``timeout``."""
        process = self.workers.pop(name)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


@contextlib.contextmanager
def bench_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """A fresh database URL for one run: ``sqlite`` (a file) or ``postgres`` (created, dropped)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'bench.db'}"
        return
    if kind != "postgres":
        raise ValueError(f"unknown database kind {kind!r}: sqlite or postgres")
    name = f"dspyq_bench_{uuid.uuid4().hex[:8]}"
    admin = make_url(POSTGRES_ADMIN_URL).render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextlib.contextmanager
def deployment(
    database: str = "sqlite", latency: float = 0.0, **env: str
) -> Iterator[tuple[BenchCluster, FakeLMProcess, Path]]:
    """A fake LM process and a cluster (no workers yet) on a fresh database; all cleaned up."""
    tmp_path = Path(tempfile.mkdtemp(prefix="dspyq-bench-"))
    fake = FakeLMProcess(tmp_path, latency=latency).start()
    failed = True
    try:
        with bench_database(database, tmp_path) as url:
            cluster = BenchCluster(tmp_path, fake, url, **env)
            try:
                yield cluster, fake, tmp_path
                failed = cluster.keep_logs
            finally:
                cluster.stop()
    finally:
        fake.stop()
        if failed:
            print(f"logs of the run kept in {tmp_path}", file=sys.stderr)
        else:
            shutil.rmtree(tmp_path, ignore_errors=True)


# --- batches ---------------------------------------------------------------------------


@dataclass
class Batch:
    """One batch of jobs: when each was sent and when its worker finished it."""

    sent: dict[str, float]
    done: dict[str, float] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0

    @property
    def wall(self) -> float:
        """Seconds from the first job sent to the last result stored."""
        return max(self.done.values()) - self.started if self.done else float("nan")

    @property
    def throughput(self) -> float:
        return len(self.done) / self.wall if self.done else 0.0

    @property
    def latencies(self) -> list[float]:
        return sorted(self.done[i] - self.sent[i] for i in self.done)

    def failures(self) -> int:
        return sum(1 for state in self.states.values() if state != "SUCCESS")


def _epoch(date_done: Any) -> float:
    if isinstance(date_done, datetime):
        return date_done.timestamp()
    return datetime.fromisoformat(str(date_done)).timestamp()


def wait_for_results(app: Celery, batch: Batch, timeout: float, interval: float = 0.05) -> None:
    """Poll the result backend until every job is done; ``done`` is the worker's date_done.

    Raises TimeoutError (naming how many are missing) after ``timeout`` seconds.
    """
    pending = list(batch.sent)
    deadline = time.monotonic() + timeout
    backend = app.backend
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} of {len(batch.sent)} jobs unfinished")
        keys = [backend.get_key_for_task(task_id) for task_id in pending]
        still: list[str] = []
        for start in range(0, len(keys), 1000):
            values = backend.mget(keys[start : start + 1000])
            for task_id, raw in zip(pending[start : start + 1000], values, strict=True):
                meta = backend.decode_result(raw) if raw else None
                if meta is None or meta["status"] not in ("SUCCESS", "FAILURE", "REVOKED"):
                    still.append(task_id)
                    continue
                batch.states[task_id] = meta["status"]
                batch.done[task_id] = _epoch(meta["date_done"])
                if meta["status"] == "FAILURE" and isinstance(meta.get("result"), dict):
                    error = meta["result"]
                    batch.errors[task_id] = f"{error.get('exc_type')}: {error.get('exc_message')}"
        pending = still
        if pending:
            time.sleep(interval)
    batch.finished = time.time()


def run_batch(
    app: Celery,
    send: Callable[[int], list[str]],
    count: int,
    timeout: float,
    interval: float = 0.05,
) -> Batch:
    """Send ``count`` jobs with ``send`` (which returns their task ids) and wait for all.

    Every job counts as sent when the batch started: a batch's latencies are the time
    each job took to be done counted from the start, its throughput jobs over wall time.
    """
    started = time.time()
    ids = send(count)
    batch = Batch(sent=dict.fromkeys(ids, started), started=started)
    wait_for_results(app, batch, timeout, interval)
    return batch


def sequential_latencies(
    app: Celery, send_one: Callable[[], str], count: int, timeout: float = 30.0
) -> list[float]:
    """Send ``count`` jobs one at a time, each after the previous finished; their latencies."""
    out: list[float] = []
    for _ in range(count):
        sent = time.time()
        task_id = send_one()
        batch = Batch(sent={task_id: sent}, started=sent)
        wait_for_results(app, batch, timeout, interval=0.0005)
        out.append(batch.done[task_id] - sent)
    return sorted(out)


MODEL = "openai/bench-model"


def dspyq_sender(cluster: Cluster, program: Any = None) -> Callable[[int], list[str]]:
    """A function sending ``n`` executions of ``program`` (default: ``Predict("question
    -> answer")``) through the cluster's client, every one with inputs never sent before,
    so no answer comes from a cache."""
    import dspyq

    program = program if program is not None else dspyq.Predict("question -> answer")
    run = uuid.uuid4().hex[:8]
    counter = iter(range(10**9))

    def send(count: int) -> list[str]:
        inputs = [{"question": f"bench {run} question {next(counter)}"} for _ in range(count)]
        return [job.id for job in cluster.client.map(program, inputs, lm=MODEL)]

    return send


def steady_throughput(batch: Batch, low: float = 0.1, high: float = 0.9) -> float:
    """Jobs per second between the ``low`` and ``high`` quantiles of completion times.

    Leaves out the ramp-up (workers taking their first jobs) and the tail (the last,
    partly filled wave), which a short batch over-weights.
    """
    done = sorted(batch.done.values())
    if len(done) < 10:
        return batch.throughput
    a, b = round(low * (len(done) - 1)), round(high * (len(done) - 1))
    return (b - a) / (done[b] - done[a]) if done[b] > done[a] else float("nan")


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of sorted ``values``, nearest rank."""
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return values[index]


def latency_summary(values: list[float]) -> dict[str, float]:
    """Median, p90, p99 and mean of latencies, in milliseconds."""
    ms = sorted(v * 1000 for v in values)
    return {
        "p50_ms": round(percentile(ms, 0.5), 2),
        "p90_ms": round(percentile(ms, 0.9), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "mean_ms": round(statistics.fmean(ms), 2) if ms else float("nan"),
    }


# --- the fake LM's own capacity -----------------------------------------------------------

_CHECK_BODY = json.dumps(
    {
        "model": "bench-model",
        "messages": [
            {"role": "system", "content": "Your output fields are:\n1. `answer` (str)"},
            {"role": "user", "content": "[[ ## question ## ]]\ncapacity check"},
        ],
    }
).encode()


async def _hammer(port: int, requests: int, connections: int) -> None:
    """Send ``requests`` completions over ``connections`` keep-alive connections.

    Raw HTTP/1.1 on asyncio streams: a few tens of microseconds per request, so the
    server, not this client, is what gets measured.
    """
    import asyncio

    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(_CHECK_BODY)}\r\n\r\n"
    ).encode()
    remaining = [requests]

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while remaining[0] > 0:
                remaining[0] -= 1
                writer.write(head + _CHECK_BODY)
                status = await reader.readline()
                if b" 200 " not in status:
                    raise RuntimeError(f"fake LM answered {status!r}")
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))


def fake_lm_capacity(fake: FakeLMProcess, requests: int, connections: int) -> dict[str, float]:
    """Requests per second the fake LM serves with ``connections`` requests in flight,
    and its CPU milliseconds per request."""
    import asyncio

    assert fake.process is not None
    pid = fake.process.pid
    before = _cpu_by_process()[pid][2]
    started = time.perf_counter()
    asyncio.run(_hammer(fake.port, requests, connections))
    elapsed = time.perf_counter() - started
    used = _cpu_by_process()[pid][2] - before
    return {
        "requests": requests,
        "in_flight": connections,
        "per_s": round(requests / elapsed, 1),
        "ideal_per_s": round(connections / fake.latency, 1) if fake.latency else float("inf"),
        "server_cpu_ms_per_request": round(1000 * used / requests, 3),
    }


def max_in_flight(arrivals: list[float], latency: float) -> int:
    """Most requests the fake LM held at once, each held ``latency`` s after it arrived."""
    ordered = sorted(arrivals)
    best = 0
    for i, start in enumerate(ordered):
        best = max(best, bisect.bisect_left(ordered, start + latency) - i)
    return best


# --- CPU accounting -----------------------------------------------------------------------


def _cpu_by_process() -> dict[int, tuple[int, str, float]]:
    """pid -> (process group, command, CPU seconds) for every process we may read."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[int, str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        # The command is in parentheses and may hold spaces: split after the last ')'.
        command = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        out[int(entry.name)] = (int(fields[2]), command, (int(fields[11]) + int(fields[12])) / tick)
    return out


class CpuMeter:
    """CPU time spent by each part of a deployment between :meth:`start` and :meth:`stop`.

    Parts: the workers (each worker's process group), the fake LM, this client process,
    ``redis-server`` and ``postgres``. On a machine with few cores this says where the
    cores went, which wall-clock figures alone cannot.
    """

    def __init__(self, cluster: BenchCluster) -> None:
        self.cluster = cluster
        self.fake = cluster.fake_process
        self._before: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def _sample(self) -> dict[str, float]:
        groups = {p.pid: "workers" for p in self.cluster.workers.values()}
        if self.fake.process is not None:
            groups[self.fake.process.pid] = "fake LM"
        me = os.getpid()
        totals: dict[str, float] = {}
        for pid, (pgid, command, seconds) in _cpu_by_process().items():
            if pid == me:
                part = "client"
            elif pgid in groups:
                part = groups[pgid]
            elif command.startswith("redis-server"):
                part = "redis"
            elif command.startswith("postgres"):
                part = "postgres"
            else:
                continue
            totals[part] = totals.get(part, 0.0) + seconds
        return totals

    def start(self) -> None:
        self._before = self._sample()

    def stop(self) -> dict[str, float]:
        after = self._sample()
        self.used = {
            part: round(after[part] - self._before.get(part, 0.0), 2)
            for part in after
            if after[part] - self._before.get(part, 0.0) > 0
        }
        return self.used

    def per_job_ms(self, jobs: int) -> dict[str, float]:
        """CPU milliseconds per job for each part (and ``total``)."""
        shares = {part: round(1000 * s / jobs, 2) for part, s in sorted(self.used.items())}
        shares["total"] = round(sum(shares.values()), 2)
        return shares


# --- reporting ----------------------------------------------------------------------------


@dataclass
class Report:
    """The figures of one benchmark run, printed as a table and as one JSON line."""

    name: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Other processes on the machine skew every figure: the load when the run began.
    load_at_start: str = field(default_factory=lambda: Path("/proc/loadavg").read_text()[:14])

    def add(self, **row: Any) -> None:
        self.rows.append(row)
        print("  " + json.dumps(row), flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    def print(self, summary: Mapping[str, Any] | None = None) -> None:
        print(f"\n== {self.name} ==")
        print(f"command: {command_line()}")
        print(
            f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, "
            f"load average at start {self.load_at_start}"
        )
        for row in self.rows:
            print("  " + "  ".join(f"{k}={v}" for k, v in row.items()))
        for text in self.notes:
            print(f"  note: {text}")
        if summary:
            for key, value in summary.items():
                print(f"{key}: {value}")
        print(flush=True)


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

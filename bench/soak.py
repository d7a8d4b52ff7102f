"""Soak: a mixed load at a steady rate for many minutes, watching workers' memory and
latency for growth that does not level off.

Every second ``--rate`` Predict executions are submitted (distinct questions, so the
cache never answers them), a multi-hop question every ``--multihop-every`` seconds and a
BootstrapFewShot optimization run every ``--optimize-every`` seconds, to two LM workers
and one optimize coordinator. Each minute the workers' resident memory (their whole
process groups) and the latency percentiles of the jobs that finished in that minute
are recorded; at the end a table and a verdict are printed.

    python bench/soak.py --minutes 30

Verdict: memory levels off when the workers' RSS over the last third of the run grew
by less than ``--max-growth`` percent over the middle third (start-up and warm caches
fill the first third), and latency holds when the last third's p95 is at most twice
the first third's. Exits non-zero on failed jobs or a failed verdict.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from harness import bench_database, command_line, percentile

import dspyq
from dspyq.metrics import answer_exact_match
from dspyq.testing import FakeLMServer
from dspyq.testing.cluster import Cluster

CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Italy": "Rome", "Spain": "Madrid"}


@dataclass
class Minute:
    """What finished in one minute of the run, and the workers' memory at its end."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: int = 0
    runs: int = 0
    rss_mb: list[float] = field(default_factory=list)


class Soak:
    """Submits the mixed load and gathers per-minute figures."""

    def __init__(self, cluster: Cluster, minutes: float, started: float) -> None:
        self.cluster = cluster
        self.started = started
        self.minutes = [Minute() for _ in range(int(minutes) + 2)]
        self.lock = threading.Lock()
        self.waiters = ThreadPoolExecutor(32, thread_name_prefix="soak-wait")
        self.submitted = 0

    def minute(self) -> Minute:
        index = int((time.monotonic() - self.started) // 60)
        return self.minutes[min(index, len(self.minutes) - 1)]

    def _wait(self, kind: str, sent: float, job: dspyq.Job) -> None:
        try:
            job.result(timeout=300)
        except Exception as exc:  # recorded, the run goes on
            print(f"  {kind} job {job.id} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            with self.lock:
                self.minute().failures += 1
            return
        with self.lock:
            self.minute().latencies.setdefault(kind, []).append(time.monotonic() - sent)

    def submit(self, kind: str, program: dspyq.Module, **inputs: str) -> None:
        sent = time.monotonic()
        job = self.cluster.client.submit(program, lm="openai/m", **inputs)
        self.submitted += 1
        self.waiters.submit(self._wait, kind, sent, job)

    def optimize(self) -> None:
        trainset = [
            dspyq.Example(question=f"What is the capital of {c}?", answer=a).with_inputs("question")
            for c, a in CAPITALS.items()
        ]
        run = self.cluster.client.optimize(
            dspyq.BootstrapFewShot(metric=answer_exact_match, max_bootstrapped_demos=2),
            dspyq.ChainOfThought("question -> answer"),
            trainset=trainset[:2],
            valset=trainset[2:],
            lm="openai/m",
        )
        status = run.wait(timeout=300)
        with self.lock:
            if status == "succeeded":
                self.minute().runs += 1
            else:
                print(f"  optimization run {run.id} ended {status}", file=sys.stderr)
                self.minute().failures += 1


def worker_rss_mb(cluster: Cluster) -> list[float]:
    """Resident memory of each worker's process group (the worker and its children), MiB."""
    groups = {p.pid: 0 for p in cluster.workers.values()}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            group = int(stat[stat.rindex(")") + 2 :].split()[2])
            if group in groups:
                pages = int((entry / "statm").read_text().split()[1])
                groups[group] += pages * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            continue
    return [round(v / 2**20, 1) for v in groups.values()]


def script_fake_lm(server: FakeLMServer) -> None:
    server.answer_fields({"reasoning": "r", "answer": "Final"}, match="sub_answers")
    server.answer_fields(
        {"reasoning": "two parts", "sub_questions": ["Who wrote X?", "When was Y born?"]},
        match="sub_questions",
    )
    for country, capital in CAPITALS.items():
        server.answer_fields(
            {"reasoning": f"It is {capital}.", "answer": capital}, match=f"capital of {country}"
        )
    # Anything else: the fake renders the fields the prompt asks for.


def table(minutes: list[Minute]) -> list[str]:
    lines = [
        f"{'min':>3} {'jobs':>5} {'fail':>4} {'runs':>4} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'p99 ms':>7} {'hop p95':>7} {'RSS MiB (per worker)':>28}"
    ]
    for i, m in enumerate(minutes):
        lat = sorted(m.latencies.get("predict", []))
        hops = sorted(m.latencies.get("multihop", []))
        done = sum(len(v) for v in m.latencies.values())

        def ms(values: list[float], q: float) -> str:
            return f"{percentile(values, q) * 1000:7.0f}" if values else f"{'-':>7}"

        rss = " ".join(f"{r:.0f}" for r in m.rss_mb)
        lines.append(
            f"{i + 1:>3} {done:>5} {m.failures:>4} {m.runs:>4} {ms(lat, 0.5)} {ms(lat, 0.95)} "
            f"{ms(lat, 0.99)} {ms(hops, 0.95)} {sum(m.rss_mb):>8.0f} ({rss})"
        )
    return lines


def verdict(minutes: list[Minute], max_growth: float) -> tuple[bool, str]:
    """Memory levels off and latency holds (see the module's docstring)."""
    if len(minutes) < 3:
        return False, "too short to judge: run at least 3 minutes"
    third = max(1, len(minutes) // 3)
    middle, last = minutes[third : 2 * third], minutes[-third:]
    first = minutes[:third]
    rss_mid = sum(sum(m.rss_mb) for m in middle) / max(1, len(middle))
    rss_last = sum(sum(m.rss_mb) for m in last) / max(1, len(last))
    growth = (rss_last - rss_mid) / rss_mid * 100 if rss_mid else float("nan")

    def p95(ms: list[Minute]) -> float:
        return percentile(sorted(v for m in ms for v in m.latencies.get("predict", [])), 0.95)

    p95_first, p95_last = p95(first), p95(last)
    memory_ok = growth < max_growth
    latency_ok = p95_last <= 2 * p95_first
    text = (
        f"memory: {rss_mid:.0f} -> {rss_last:.0f} MiB (middle -> last third, "
        f"{growth:+.1f}%, limit {max_growth}%): {'levels off' if memory_ok else 'GROWS'}; "
        f"latency p95: {p95_first * 1000:.0f} -> {p95_last * 1000:.0f} ms (first -> last third): "
        f"{'holds' if latency_ok else 'DEGRADES'}"
    )
    return memory_ok and latency_ok, text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=float, default=5.0, help="Predict jobs per second")
    parser.add_argument("--multihop-every", type=float, default=10.0, metavar="S")
    parser.add_argument("--optimize-every", type=float, default=300.0, metavar="S")
    parser.add_argument("--latency", type=float, default=0.1, help="fake LM seconds per call")
    parser.add_argument("--max-growth", type=float, default=5.0, help="percent, see verdict")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--cache-entries",
        type=int,
        default=2000,
        help="workers' in-process LM cache size: small enough to fill within the run, so "
        "the verdict sees whether memory stops growing once it is full",
    )
    args = parser.parse_args()

    tmp_path = Path(tempfile.mkdtemp(prefix="dspyq-soak-"))
    server = FakeLMServer(latency=args.latency).start()
    script_fake_lm(server)
    try:
        with bench_database(args.database, tmp_path) as url:
            cluster = Cluster(
                tmp_path,
                server,
                url,
                DSPYQ_CACHE__ENABLED="true",
                DSPYQ_CACHE__MAX_ENTRIES=str(args.cache_entries),
            )
            try:
                for name in ("lm1", "lm2"):
                    cluster.start_worker(name, concurrency=4)
                cluster.start_worker("coordinator", pool="optimize", concurrency=1)
                minutes = run(cluster, args)
            finally:
                cluster.stop()
    finally:
        server.stop()

    print(f"command: {command_line()}   (cpus: {os.cpu_count()}, load: {os.getloadavg()[0]:.1f})")
    print("\n".join(table(minutes)))
    failures = sum(m.failures for m in minutes)
    ok, text = verdict(minutes, args.max_growth)
    print(f"failed jobs: {failures}; optimization runs: {sum(m.runs for m in minutes)}")
    print(f"verdict: {'PASS' if ok and not failures else 'FAIL'} - {text}")
    return 0 if ok and not failures else 1


def run(cluster: Cluster, args: argparse.Namespace) -> list[Minute]:
    """Drive the load for ``args.minutes``; returns the complete minutes."""
    started = time.monotonic()
    soak = Soak(cluster, args.minutes, started)
    end = started + args.minutes * 60
    optimizer = ThreadPoolExecutor(1, thread_name_prefix="soak-optimize")
    next_hop = next_opt = started
    tick = 1.0 / args.rate
    n = 0
    sampled = 0
    while (now := time.monotonic()) < end:
        soak.submit("predict", dspyq.Predict("question -> answer"), question=f"q{n}?")
        n += 1
        if now >= next_hop:
            soak.submit("multihop", dspyq.MultiHopQA(), question=f"Complex {n}?")
            next_hop += args.multihop_every
        if now >= next_opt:
            optimizer.submit(soak.optimize)
            next_opt += args.optimize_every
        if int((now - started) // 60) > sampled:  # a minute ended: sample memory
            soak.minutes[sampled].rss_mb = worker_rss_mb(cluster)
            print(f"  minute {sampled + 1}: {n} jobs sent", file=sys.stderr, flush=True)
            sampled += 1
        time.sleep(max(0.0, started + n * tick - time.monotonic()))
    soak.waiters.shutdown(wait=True)
    optimizer.shutdown(wait=True)
    whole = int(args.minutes)
    soak.minutes[whole - 1].rss_mb = soak.minutes[whole - 1].rss_mb or worker_rss_mb(cluster)
    # What finished after the end (the tail of waiting jobs) counts in the last minute.
    for late in soak.minutes[whole:]:
        for kind, values in late.latencies.items():
            soak.minutes[whole - 1].latencies.setdefault(kind, []).extend(values)
        soak.minutes[whole - 1].failures += late.failures
        soak.minutes[whole - 1].runs += late.runs
    return soak.minutes[:whole]


if __name__ == "__main__":
    sys.exit(main())

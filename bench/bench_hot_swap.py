"""P8: how long after ``deploy()`` returns until every worker serves the new version.

Four worker processes serve ``qa@production`` under continuous load (a thread submits
jobs by reference at ``--rate`` per second, fake LM latency ``--latency``). Each run
promotes the other of two saved versions and records when ``deploy()`` returned; the
execution rows (``program_version``, ``started_at``, written by the workers on the same
clock) then tell the last moment any worker started a job on the old version. With
jobs arriving at every worker every few milliseconds, that last stale start is when
the last worker took up the new version: P8 for that run (0 when none started late).
Every job must succeed. Beside it: the first start on the new version, and the last
start on the old one after the alias move committed in SQL (the deployment's end,
a moment before ``deploy()`` returns): how long the announcement took to reach every
worker, jobs already being resolved included.

    python bench/bench_hot_swap.py --runs 7
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from datetime import UTC
from typing import Any

from harness import Report, deployment, progress
from sqlalchemy import select
from sqlmodel import col

import dspyq
from dspyq.api_client import Client
from dspyq.settings import Settings
from dspyq.store.engine import read_connection
from dspyq.store.models import ExecutionRecord
from dspyq.testing.cluster import SECRET_KEY

WORKERS = 4


def _program(take: int) -> dspyq.Predict:
    made = dspyq.Predict(
        dspyq.Signature("question -> answer").with_instructions(f"Answer, take {take}.")
    )
    made.lm = dspyq.LM("openai/m")
    return made


def _starts(client: Client, job_ids: list[str]) -> list[tuple[float, int, int]]:
    """(started_at as epoch seconds, version, attempts) of the jobs' execution rows."""
    query = select(
        col(ExecutionRecord.started_at),
        col(ExecutionRecord.program_version),
        col(ExecutionRecord.attempts),
    ).where(col(ExecutionRecord.task_id).in_(job_ids))
    with read_connection(client.engine, "read the swap's starts") as conn:
        rows = conn.execute(query).all()
    return [(at.replace(tzinfo=UTC).timestamp(), int(v), int(n)) for at, v, n in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--rate", type=float, default=100.0, help="jobs submitted per second")
    parser.add_argument("--latency", type=float, default=0.05, help="fake LM latency (s)")
    parser.add_argument("--concurrency", type=int, default=4, help="threads per worker")
    parser.add_argument("--db", default="sqlite", choices=["sqlite", "postgres"])
    parser.add_argument("--keep-logs", action="store_true", help="keep the workers' logs")
    args = parser.parse_args()
    report = Report("P8 hot-swap: deploy() returned -> last worker serving the new version")
    with deployment(args.db, latency=args.latency) as (cluster, fake, _):
        settings = Settings(
            broker_url=cluster.redis_url,
            key_prefix=cluster.prefix,
            database_url=cluster.settings.database_url,
            providers={"openai": {"api_key": SECRET_KEY, "api_base": fake.openai_base}},
        )
        cluster.keep_logs = args.keep_logs
        client = Client(settings)
        for take in (1, 2):
            client.save_program("qa", _program(take))
        for n in range(WORKERS):
            cluster.start_worker(f"w{n + 1}", concurrency=args.concurrency)
        client.deploy("qa", 1)
        jobs: list[Any] = []
        stop = threading.Event()

        def load() -> None:
            gap = 1.0 / args.rate
            while not stop.is_set():
                jobs.append(client.submit("qa@production", question="q"))
                time.sleep(gap)

        feeder = threading.Thread(target=load, daemon=True)
        feeder.start()
        swaps: list[tuple[float, float, int, int]] = []  # (deploy called, returned, old, new)
        try:
            time.sleep(3.0)  # every worker has resolved the alias and is serving
            for run in range(args.runs):
                old, new = (1, 2) if run % 2 == 0 else (2, 1)
                called = time.time()
                client.deploy("qa", new)
                swaps.append((called, time.time(), old, new))
                progress(f"run {run + 1}: deployed version {new}")
                time.sleep(2.5)
        finally:
            stop.set()
            feeder.join()
        failed = 0
        for job in jobs:
            try:
                job.result(timeout=120)
            except Exception:
                failed += 1
        starts = _starts(client, [job.id for job in jobs])
        # When each swap's alias move committed (the deployment's end), oldest first.
        moved = sorted(
            d.finished_at.replace(tzinfo=UTC).timestamp()
            for d in client.deployments("qa")
            if d.finished_at is not None
        )[-len(swaps) :]
        p8s, propagation = [], []
        for index, (_, returned, old, new) in enumerate(swaps):
            # Up to the next deploy() call: what starts after it belongs to that swap.
            until = swaps[index + 1][0] if index + 1 < len(swaps) else float("inf")
            window = [(at, v, n) for at, v, n in starts if returned - 1.0 <= at < until]
            late = [(at - returned, n) for at, v, n in window if v == old and at >= returned]
            stale = [delay for delay, _ in late]
            fresh = [at - returned for at, v, _ in window if v == new]
            p8 = max([0.0, *stale])
            p8s.append(p8)
            # Old-version starts after the move committed, deploy() not yet returned.
            after = [at - moved[index] for at, v, _ in window if v == old and at >= moved[index]]
            propagation.append(max([0.0, *after]))
            report.add(
                run=index + 1,
                p8_ms=round(p8 * 1000, 1),
                stale_starts=len(stale),
                stale_attempts=sorted({n for _, n in late}),
                first_new_start_ms=round(min(fresh) * 1000, 1) if fresh else None,
                last_old_start_after_commit_ms=round(propagation[-1] * 1000, 1),
                jobs_in_window=len(window),
            )
        client.close()
    report.note(
        f"{len(jobs)} jobs by reference, {failed} failed; {WORKERS} workers x "
        f"{args.concurrency} threads; {args.rate:g} jobs/s; fake LM {args.latency} s"
    )
    report.print(
        {
            "p8_median_ms": round(statistics.median(p8s) * 1000, 1),
            "p8_max_ms": round(max(p8s) * 1000, 1),
            "p8_min_ms": round(min(p8s) * 1000, 1),
            "after_commit_median_ms": round(statistics.median(propagation) * 1000, 1),
            "after_commit_max_ms": round(max(propagation) * 1000, 1),
            "failed_jobs": failed,
        }
    )


if __name__ == "__main__":
    main()

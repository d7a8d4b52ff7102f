"""High concurrency: thousands of jobs whose LM calls each take a full second.

At 1 s per LM call, 250 jobs per second needs at least 250 LM calls in flight at every
moment, i.e. hundreds per worker process. First the fake LM alone is checked to serve
that many (so it is not what limits the run), then ``--jobs`` jobs go through
``--workers`` dspyq workers of ``--concurrency`` each, on the chosen execution pool.
Reported: jobs per second, the most LM calls the fake LM held at once, CPU per job of
each process, and the workers' memory.

    python bench/bench_high_concurrency.py --jobs 2000 --workers 2 --concurrency 250
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import Any

from harness import (
    CpuMeter,
    Report,
    deployment,
    dspyq_sender,
    fake_lm_capacity,
    latency_summary,
    max_in_flight,
    progress,
    run_batch,
    steady_throughput,
)
from noop_app import SLEEP_TASK

from dspyq.tasks.app import lm_queue

TARGET = 250.0
QUEUE = lm_queue("openai")


def _celery_baseline(args: argparse.Namespace) -> dict[str, Any]:
    """The same batch as a bare Celery task that sleeps like the LM: Celery's own ceiling."""
    with deployment(args.db, latency=args.latency) as (cluster, _fake, _tmp):
        cluster.start_bare_workers("sleep", args.workers, args.concurrency, args.exec_pool)
        app = cluster.client.app

        def send(count: int) -> list[str]:
            with app.producer_or_acquire() as producer:
                return [
                    app.send_task(
                        SLEEP_TASK, args=[args.latency], queue=QUEUE, producer=producer
                    ).id
                    for _ in range(count)
                ]

        progress("bare Celery: warm-up")
        run_batch(app, send, min(args.workers * args.concurrency, 200), timeout=120)
        progress(f"bare Celery: {args.jobs} jobs")
        meter = CpuMeter(cluster)
        meter.start()
        batch = run_batch(app, send, args.jobs, timeout=args.timeout)
        meter.stop()
    return {
        "jobs": args.jobs,
        "failed": batch.failures(),
        "wall_s": round(batch.wall, 2),
        "jobs_per_s": round(batch.throughput, 1),
        "steady_per_s": round(steady_throughput(batch), 1),
        "cpu_ms_per_job": meter.per_job_ms(args.jobs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=250)
    parser.add_argument("--latency", type=float, default=1.0, help="fake LM seconds per call")
    parser.add_argument("--exec-pool", default="threads")
    parser.add_argument("--db", default="sqlite", choices=["sqlite", "postgres"])
    parser.add_argument("--timeout", type=float, default=240.0, help="give up after (s)")
    parser.add_argument(
        "--celery-baseline",
        action="store_true",
        help="also run a bare Celery task that only sleeps --latency s, same workers and config",
    )
    args = parser.parse_args()

    slots = args.workers * args.concurrency
    report = Report(
        f"{args.jobs} jobs at {args.latency:g} s LM latency, {args.workers} x {args.concurrency} "
        f"{args.exec_pool}, {args.db}"
    )
    started = time.monotonic()
    with deployment(args.db, latency=args.latency) as (cluster, fake, _tmp):
        progress(f"fake LM alone: {2 * slots} requests, {slots} in flight")
        capacity = fake_lm_capacity(fake, 2 * slots, slots)
        report.add(check="fake LM alone", **capacity)
        checked = len(fake.requests)  # the check's requests stay in the log

        cluster.start_workers(args.workers, args.concurrency, args.exec_pool)
        send = dspyq_sender(cluster)
        progress("warm-up")
        run_batch(cluster.client.app, send, min(slots, 200), timeout=120)
        progress(f"{args.jobs} jobs")
        meter = CpuMeter(cluster)
        meter.start()
        batch = run_batch(cluster.client.app, send, args.jobs, timeout=args.timeout)
        cluster.keep_logs |= batch.failures() > 0
        meter.stop()
        rss = cluster.worker_rss_mb()
        arrivals = [entry["time"] for entry in fake.requests[checked:]]
        arrivals = arrivals[-args.jobs :]  # the batch's own calls, after the warm-up's
    report.add(
        run="dspyq",
        jobs=args.jobs,
        failed=batch.failures(),
        wall_s=round(batch.wall, 2),
        jobs_per_s=round(batch.throughput, 1),
        steady_per_s=round(steady_throughput(batch), 1),
        ideal_per_s=round(slots / args.latency, 1),
        max_lm_calls_in_flight=max_in_flight(arrivals, args.latency),
        worker_rss_mb=rss,
        done_after=latency_summary(batch.latencies),
        cpu_ms_per_job=meter.per_job_ms(args.jobs),
    )
    if batch.errors:
        common = Counter(batch.errors.values()).most_common(3)
        report.add(errors="; ".join(f"{n} x {text[:200]}" for text, n in common))
    if args.celery_baseline:
        report.add(run="bare Celery sleep task", **_celery_baseline(args))
    report.print(
        {
            "target": f">= {TARGET:g} jobs/s",
            "met": batch.throughput >= TARGET,
            "elapsed_s": round(time.monotonic() - started, 1),
        }
    )


if __name__ == "__main__":
    main()

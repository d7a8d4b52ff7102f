"""Which Celery execution pool runs many slow LM calls at once best: threads, gevent, prefork.

Each run is ``POOL:WxC``: ``W`` dspyq workers with ``--exec-pool POOL`` and concurrency
``C``, on a fresh deployment whose fake LM takes ``--latency`` s per call; a batch of
``--jobs`` jobs. gevent workers start through ``bench/gevent_worker.py`` (monkey
patching first, as ``celery worker -P gevent`` would). Reported per run: jobs per
second, the most LM calls in flight at the fake LM, CPU per job of every process, and
the workers' resident memory (prefork children included).

    python bench/bench_exec_pools.py --runs threads:2x250,gevent:2x250,prefork:2x16
"""

from __future__ import annotations

import argparse
import importlib.util
import time

from harness import (
    CpuMeter,
    Report,
    deployment,
    dspyq_sender,
    max_in_flight,
    progress,
    run_batch,
    steady_throughput,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs",
        default="threads:2x50,threads:2x250,gevent:2x250,prefork:2x16",
        help="comma-separated POOL:WORKERSxCONCURRENCY",
    )
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=1.0, help="fake LM seconds per call")
    parser.add_argument("--db", default="sqlite", choices=["sqlite", "postgres"])
    parser.add_argument("--timeout", type=float, default=150.0, help="per run, seconds")
    args = parser.parse_args()

    report = Report(f"execution pools, {args.jobs} jobs at {args.latency:g} s LM latency")
    started = time.monotonic()
    for run in args.runs.split(","):
        pool, _, shape = run.partition(":")
        workers, concurrency = (int(part) for part in shape.lower().split("x"))
        slots = workers * concurrency
        if pool == "gevent" and importlib.util.find_spec("gevent") is None:
            report.add(run=run, result="skipped: gevent is not installed (pip install gevent)")
            continue
        with deployment(args.db, latency=args.latency) as (cluster, fake, _tmp):
            cluster.start_workers(workers, concurrency, pool)
            send = dspyq_sender(cluster)
            progress(f"{run}: warm-up")
            run_batch(cluster.client.app, send, min(slots, 100), timeout=120)
            idle_rss = cluster.worker_rss_mb()
            seen = len(fake.requests)
            progress(f"{run}: {args.jobs} jobs")
            meter = CpuMeter(cluster)
            meter.start()
            try:
                batch = run_batch(cluster.client.app, send, args.jobs, timeout=args.timeout)
                cluster.keep_logs |= batch.failures() > 0
            except TimeoutError as exc:
                meter.stop()
                cluster.keep_logs = True
                report.add(run=run, result=f"gave up after {args.timeout:g} s: {exc}")
                continue
            meter.stop()
            rss = cluster.worker_rss_mb()
            arrivals = [entry["time"] for entry in fake.requests[seen:]]
        report.add(
            run=run,
            failed=batch.failures(),
            wall_s=round(batch.wall, 2),
            jobs_per_s=round(batch.throughput, 1),
            steady_per_s=round(steady_throughput(batch), 1),
            ideal_per_s=round(slots / args.latency, 1),
            max_lm_calls_in_flight=max_in_flight(arrivals, args.latency),
            rss_mb_idle=idle_rss,
            rss_mb_loaded=rss,
            cpu_ms_per_job=meter.per_job_ms(args.jobs),
        )
    report.print({"elapsed_s": round(time.monotonic() - started, 1)})


if __name__ == "__main__":
    main()

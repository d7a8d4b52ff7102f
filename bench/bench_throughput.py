"""Throughput through the queue at a fixed LM latency, against the ideal.

With every LM call taking ``--latency`` seconds and ``workers x concurrency`` jobs
running at once, no deployment can beat ``workers * concurrency / latency`` jobs per
second; what dspyq adds (queue, program rebuild, cache, limiter, breaker, SQL records)
shows as the distance to that ideal. Each configuration ``WxC`` runs ``W`` worker
processes of concurrency ``C`` on one fresh deployment (fake LM in its own process,
own Redis prefix, own database) and a batch of ``--seconds`` worth of ideal work.

    python bench/bench_throughput.py --latency 0.1 --configs 1x4,1x8,2x8,2x16
"""

from __future__ import annotations

import argparse
import time

from harness import (
    CpuMeter,
    Report,
    deployment,
    dspyq_sender,
    progress,
    run_batch,
    steady_throughput,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.1, help="fake LM seconds per call")
    parser.add_argument(
        "--configs", default="1x4,1x8,2x8,2x16", help="comma-separated WORKERSxCONCURRENCY"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="ideal duration of a batch")
    parser.add_argument("--exec-pool", default="threads")
    parser.add_argument("--db", default="sqlite", choices=["sqlite", "postgres"])
    args = parser.parse_args()

    report = Report(f"throughput at {args.latency * 1000:g} ms LM latency ({args.exec_pool})")
    started = time.monotonic()
    best = 0.0
    for config in args.configs.split(","):
        workers, concurrency = (int(part) for part in config.lower().split("x"))
        ideal = workers * concurrency / args.latency
        jobs = max(50, round(ideal * args.seconds))
        with deployment(args.db, latency=args.latency) as (cluster, _fake, _tmp):
            cluster.start_workers(workers, concurrency, args.exec_pool)
            send = dspyq_sender(cluster)
            progress(f"{config}: warm-up")
            run_batch(cluster.client.app, send, workers * concurrency * 2, timeout=120)
            progress(f"{config}: {jobs} jobs, ideal {ideal:.0f}/s")
            meter = CpuMeter(cluster)
            meter.start()
            batch = run_batch(cluster.client.app, send, jobs, timeout=args.seconds * 20 + 60)
            cluster.keep_logs |= batch.failures() > 0
            meter.stop()
        share = batch.throughput / ideal
        best = max(best, share)
        report.add(
            config=config,
            jobs=jobs,
            failed=batch.failures(),
            ideal_per_s=round(ideal, 1),
            jobs_per_s=round(batch.throughput, 1),
            of_ideal=f"{100 * share:.1f}%",
            steady_per_s=round(steady_throughput(batch), 1),
            cpu_ms_per_job=meter.per_job_ms(jobs),
        )
    report.print(
        {
            "target": ">= 90% of ideal (workers * concurrency / latency)",
            "best of ideal": f"{100 * best:.1f}%",
            "elapsed_s": round(time.monotonic() - started, 1),
        }
    )


if __name__ == "__main__":
    main()

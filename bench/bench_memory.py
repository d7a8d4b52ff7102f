"""A worker's resident memory as jobs go by: after ``--early`` jobs and after ``--jobs``.

One worker (``--concurrency``), fake LM latency 0, ``Predict("question -> answer")``
jobs sent by ``map`` in batches of ``--chunk``, every one with inputs never sent before
(so each job writes its own cache entry, execution row, events and result: what could
grow). The worker's RSS (all its processes) is sampled after each chunk; the target is
the RSS after ``--jobs`` within 10% of the RSS after ``--early``.

    python bench/bench_memory.py --jobs 100000 --early 1000
"""

from __future__ import annotations

import argparse
import time

from harness import Report, deployment, dspyq_sender, progress, run_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--early", type=int, default=1_000)
    parser.add_argument("--chunk", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    report = Report(f"worker memory over {args.jobs} jobs")
    with deployment(latency=0.0) as (cluster, _fake, _tmp):
        cluster.start_workers(1, args.concurrency)
        send = dspyq_sender(cluster)
        done, early_rss, started = 0, 0.0, time.monotonic()
        samples: list[tuple[int, float]] = []
        while done < args.jobs:
            count = min(args.chunk, args.jobs - done)
            batch = run_batch(cluster.client.app, send, count, timeout=600)
            done += count
            rss = cluster.worker_rss_mb()
            samples.append((done, rss))
            if done == args.early or (early_rss == 0.0 and done > args.early):
                early_rss = rss
            if batch.failures():
                report.note(f"{batch.failures()} failed jobs in the chunk ending at {done}")
            if done % (10 * args.chunk) == 0 or done == args.jobs:
                elapsed = time.monotonic() - started
                progress(f"{done} jobs, RSS {rss} MiB, {done / elapsed:.0f} jobs/s")
        for jobs, rss in samples[:: max(1, len(samples) // 10)] + samples[-1:]:
            report.add(jobs=jobs, worker_rss_mib=rss)
    final = samples[-1][1]
    growth = (final - early_rss) / early_rss if early_rss else float("nan")
    report.print(
        {
            f"rss after {args.early} jobs (MiB)": early_rss,
            f"rss after {args.jobs} jobs (MiB)": final,
            "growth": f"{100 * growth:+.1f}% (target: within 10%)",
        }
    )


if __name__ == "__main__":
    main()

"""Where a dspyq worker's CPU goes, by component, while it runs a batch.

One worker runs a batch of ``Predict`` jobs (fake LM latency ``--latency``) while
py-spy samples it (``--gil``: only the thread holding the GIL, i.e. where the CPU goes,
not where threads wait). Every sample is put in the first bucket whose marker is on
its stack, so the shares add up to 100%. Needs py-spy (``pip install py-spy``; it is
not a dependency of dspyq) and permission to trace the worker.

    python bench/profile_worker.py --jobs 1000 --concurrency 8
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from harness import Report, deployment, dspyq_sender, progress, run_batch

# (bucket, markers): a sample goes to the first bucket one of whose markers (a function
# name as py-spy prints it) is on its stack. Order matters: inner parts come first.
BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    ("lm_request sink: events + lm_requests rows", ("StoreEventSink.__call__",)),
    ("LM cache get/put (L1 LRU, L2 Redis, L3 SQL)", ("LayeredCache.get", "LayeredCache.put")),
    ("HTTP call to the provider (httpx)", ("HTTPProvider.complete",)),
    ("rate limiter + circuit breaker (Redis)", ("RedisProviderGate.run",)),
    ("rest of LM.forward (history, usage, cost)", ("LM.forward",)),
    ("adapter: prompt formatting and parsing", ("Adapter.__call__",)),
    # Results are stored by the thread that commits the successes, inside its records.
    ("batch jobs' results to Redis", ("_store_results",)),
    ("execution records (AttemptRecorder)", ("AttemptRecorder.",)),
    ("program from spec (cached deep copy)", ("build_program",)),
    ("rest of the job (request/result models, events)", ("execute_module", "_run_item")),
    ("rest of the batch (message, cancel check, started marks)", ("execute_batch",)),
    ("Celery (consumer, acks) and background writers", ("",)),
]


def bucket_of(stack: str) -> str:
    for name, markers in BUCKETS:
        if any(marker in stack for marker in markers):
            return name
    return BUCKETS[-1][0]


def _readable(stack: str) -> bool:
    """Whether py-spy read the stack: under load it sometimes takes a string in the
    worker's memory (an LM answer) for a frame, with no Python file named anywhere."""
    return ".py:" in stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--processes", type=int, default=1, help="worker processes (the first one is sampled)"
    )
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--exec-pool", default="threads")
    parser.add_argument("--db", default="sqlite", choices=["sqlite", "postgres"])
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--raw", type=Path, help="also keep py-spy's raw stacks in this file")
    args = parser.parse_args()
    spy = shutil.which("py-spy")
    if spy is None:
        sys.exit("py-spy is not installed: pip install py-spy")

    report = Report(f"worker CPU by component ({args.exec_pool}, c={args.concurrency})")
    with deployment(args.db, latency=args.latency) as (cluster, _fake, tmp):
        name = cluster.start_workers(args.processes, args.concurrency, args.exec_pool)[0]
        send = dspyq_sender(cluster)
        run_batch(cluster.client.app, send, 50, timeout=60)
        out = Path(tmp) / "profile.txt"
        argv = [spy, "record", "--pid", str(cluster.workers[name].pid), "--gil"]
        argv += ["--format", "raw", "--rate", str(args.rate), "--output", str(out)]
        sampler = subprocess.Popen(
            [*argv, "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            progress(f"{args.jobs} jobs under py-spy")
            batch = run_batch(cluster.client.app, send, args.jobs, timeout=300)
        finally:
            sampler.send_signal(signal.SIGINT)
            sampler.wait(timeout=60)
        if args.raw is not None:
            shutil.copyfile(out, args.raw)
        samples: Counter[str] = Counter()
        unreadable = 0
        for line in out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():  # py-spy may misread a frame's name across lines
                continue
            if _readable(stack):
                samples[bucket_of(stack)] += int(count)
            else:
                unreadable += int(count)
    total = sum(samples.values()) or 1
    for name, _ in BUCKETS:
        report.add(component=name, share=f"{100 * samples[name] / total:.1f}%")
    report.print(
        {
            "jobs_per_s": round(batch.throughput, 1),
            "samples": total,
            "unreadable_samples": unreadable,
            "note": "shares of the worker process's CPU (GIL held), Celery included",
        }
    )


if __name__ == "__main__":
    main()

"""A/B of dspyq's per-job cost: worker variants take turns in one deployment.

This machine's speed drifts by up to 2x within minutes, so two runs of
``bench_overhead.py`` made minutes apart cannot tell a 5% change. Here every variant
runs the same batch (``Predict``, fake LM latency 0, one worker) in turns for
``--rounds`` rounds, on one fake LM, Redis key prefix and database, and each is
reported by its median round. A variant is a name and the environment its worker is
started with, so it can be a setting or another version of the code:

    python bench/bench_ab.py --variant before:PYTHONPATH=../old/src --variant after: \\
        --rounds 6 --jobs 1500

(``../old/src`` being the ``src`` of a checkout of the earlier commit, for example from
``git worktree add ../old <commit>``). ``--variant name:KEY=VALUE,KEY=VALUE`` sets
several variables; an empty environment means the code and settings as they are.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from harness import CpuMeter, Report, deployment, dspyq_sender, progress, run_batch

import dspyq


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """``name:KEY=VALUE,KEY=VALUE`` as (name, environment)."""
    name, sep, assignments = text.partition(":")
    if not name or not sep:
        raise argparse.ArgumentTypeError(f"expected NAME:[KEY=VALUE,...], got {text!r}")
    env: dict[str, str] = {}
    for item in filter(None, assignments.split(",")):
        key, eq, value = item.partition("=")
        if not key or not eq:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE in {text!r}, got {item!r}")
        env[key] = value
    return name, env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--variant", type=parse_variant, action="append", required=True, help="NAME:[KEY=VALUE,...]"
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=1500)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--processes", type=int, default=1, help="worker processes per variant")
    parser.add_argument("--db", default="sqlite", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    names = [name for name, _ in args.variant]
    if len(set(names)) != len(names) or len(names) < 2:
        parser.error("give at least two variants, each with its own name")
    if args.rounds < 1 or args.jobs < 1 or args.processes < 1:
        parser.error("--rounds, --jobs and --processes must be at least 1")

    shape = f"{args.processes} x threads c={args.concurrency}"
    report = Report(f"A/B of per-job cost ({shape}, {args.db})")
    ms: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    started = time.monotonic()
    with deployment(args.db, latency=0.0) as (cluster, _fake, _tmp):
        send = dspyq_sender(cluster, dspyq.Predict("question -> answer"))
        base_env = dict(cluster.env)
        for round_no in range(args.rounds):
            for name, env in args.variant:
                cluster.env = {**base_env, **env}
                cluster.start_workers(args.processes, args.concurrency)
                try:
                    run_batch(cluster.client.app, send, args.warmup, timeout=120)
                    meter = CpuMeter(cluster)
                    meter.start()
                    batch = run_batch(cluster.client.app, send, args.jobs, timeout=240)
                    meter.stop()
                finally:
                    cluster.stop_workers()
                if batch.failures():
                    raise SystemExit(f"{name}: {batch.failures()} jobs failed")
                ms[name].append(round(1000 / batch.throughput, 3))
                cpu[name].append(meter.per_job_ms(args.jobs).get("workers", 0.0))
                progress(f"round {round_no + 1} {name}: {ms[name][-1]} ms per job")
        cluster.env = base_env
    for name, env in args.variant:
        row: dict[str, Any] = {
            "variant": name,
            "env": env,
            "median_ms_per_job": round(statistics.median(ms[name]), 3),
            "min_ms_per_job": min(ms[name]),
            "median_worker_cpu_ms_per_job": round(statistics.median(cpu[name]), 2),
            "rounds_ms_per_job": ms[name],
        }
        report.add(**row)
    first = statistics.median(ms[names[0]])
    summary = {
        f"{name} / {names[0]} (median ms per job)": round(statistics.median(ms[name]) / first, 3)
        for name in names[1:]
    }
    summary["elapsed_s"] = round(time.monotonic() - started, 1)
    report.print(summary)


if __name__ == "__main__":
    main()

"""Per-job overhead of dspyq's queue path against a bare Celery no-op on the same broker.

Three workers are run one after the other, each alone on the same queue, with the same
Celery app configuration (``dspyq.tasks.app.make_app``), execution pool and concurrency:

- ``celery noop``: a no-op task (``bench/noop_app.py``) receiving the same request JSON;
- ``celery http``: a bare task making one raw POST to the fake LM (what the fake LM
  costs by itself);
- ``dspyq``: ``dspyq.execute_module`` running ``Predict("question -> answer")``
  through the whole worker path (program rebuilt from JSON, adapter, LM with the
  layered cache, rate limiter and breaker, events and rows in SQL).

The fake LM answers at once (latency 0) from its own process. For each: a batch of
``--jobs`` jobs sent at once (throughput, ms per job) and ``--sequential`` jobs sent one
after the other (end-to-end latency of a lone job). Every dspyq job has distinct
inputs, so no answer comes from the cache.

    python bench/bench_overhead.py --jobs 500 --concurrency 8 --rounds 3

The three workers take turns for ``--rounds`` rounds and each figure is the median
round, so a machine whose speed drifts during the run (a shared one does) weighs on
all three alike.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from typing import Any

from harness import (
    MODEL,
    BenchCluster,
    CpuMeter,
    Report,
    deployment,
    dspyq_sender,
    latency_summary,
    progress,
    run_batch,
    sequential_latencies,
)
from noop_app import HTTP_TASK, NOOP_TASK

import dspyq
from dspyq.core.program import program_to_spec
from dspyq.tasks.app import lm_queue
from dspyq.tasks.messages import ExecutionRequest

QUEUE = lm_queue("openai")


def _program() -> dspyq.Predict:
    return dspyq.Predict("question -> answer")


def _celery_request(program: dspyq.Module) -> dict[str, Any]:
    spec = program_to_spec(program).model_dump(mode="json")
    request = ExecutionRequest(
        program=spec, inputs={"question": "q"}, lm=MODEL, correlation_id=uuid.uuid4().hex
    )
    return request.model_dump(mode="json")


def _measure_celery(
    cluster: BenchCluster, task: str, args: argparse.Namespace, report: Report
) -> dict[str, Any]:
    app = cluster.client.app
    payload = _celery_request(_program())
    cluster.start_bare_workers(
        task.replace(".", "-"), args.processes, args.concurrency, args.exec_pool
    )

    def send(count: int) -> list[str]:
        with app.producer_or_acquire() as producer:
            return [
                app.send_task(task, kwargs={"request": payload}, queue=QUEUE, producer=producer).id
                for _ in range(count)
            ]

    return _measure(cluster, f"celery {task}", send, lambda: send(1)[0], args, report)


def _measure_dspyq(
    cluster: BenchCluster, args: argparse.Namespace, report: Report
) -> dict[str, Any]:
    cluster.start_workers(args.processes, args.concurrency, args.exec_pool)
    send = dspyq_sender(cluster, _program())
    return _measure(cluster, "dspyq execute_module", send, lambda: send(1)[0], args, report)


def _measure(
    cluster: BenchCluster,
    label: str,
    send: Callable[[int], list[str]],
    send_one: Callable[[], str],
    args: argparse.Namespace,
    report: Report,
) -> dict[str, Any]:
    app = cluster.client.app
    progress(f"{label}: warm-up")
    run_batch(app, send, args.warmup, timeout=120)
    progress(f"{label}: batch of {args.jobs}")
    meter = CpuMeter(cluster)
    meter.start()
    batch = run_batch(app, send, args.jobs, timeout=240)
    meter.stop()
    progress(f"{label}: {args.sequential} sequential jobs")
    lone = sequential_latencies(app, send_one, args.sequential)
    cluster.stop_workers()
    row = {
        "worker": label,
        "jobs": args.jobs,
        "failed": batch.failures(),
        "wall_s": round(batch.wall, 3),
        "jobs_per_s": round(batch.throughput, 1),
        "ms_per_job": round(1000 / batch.throughput, 3),
        **{f"lone_{k}": v for k, v in latency_summary(lone).items()},
        "cpu_ms_per_job": meter.per_job_ms(args.jobs),
    }
    report.add(**row)
    return row


def _median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The round whose ms per job is the median one (its latencies and CPU with it)."""
    ordered = sorted(rows, key=lambda row: row["ms_per_job"])
    return {**ordered[len(ordered) // 2], "rounds_ms_per_job": [r["ms_per_job"] for r in rows]}


BATCH_TARGET = 1.2
"""A batch's ms per job, at most this many times the bare Celery no-op's."""

LONE_TARGET = 1.3
"""A lone job's p50 latency, at most this many times a bare Celery task making the same POST."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--sequential", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--processes", type=int, default=1, help="worker processes of each kind, side by side"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--exec-pool", default="threads")
    parser.add_argument("--db", default="sqlite", choices=["sqlite", "postgres"])
    parser.add_argument(
        "--skip-http", action="store_true", help="do not run the raw-HTTP Celery baseline"
    )
    args = parser.parse_args()
    if args.rounds < 1 or args.processes < 1:
        parser.error("--rounds and --processes must be at least 1")

    shape = f"{args.processes} x {args.exec_pool} c={args.concurrency}"
    report = Report(f"overhead per job ({shape}, {args.db})")
    started = time.monotonic()
    kinds: dict[str, Callable[[BenchCluster], dict[str, Any]]] = {
        "noop": lambda cluster: _measure_celery(cluster, NOOP_TASK, args, report),
        "http": lambda cluster: _measure_celery(cluster, HTTP_TASK, args, report),
        "dspyq": lambda cluster: _measure_dspyq(cluster, args, report),
    }
    if args.skip_http:
        del kinds["http"]
    rounds: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    with deployment(args.db, latency=0.0) as (cluster, _fake, _tmp):
        # Taken in turns, so a machine that speeds up or slows down during the run
        # weighs on every worker alike; each figure below is the median round.
        for _ in range(args.rounds):
            for kind, measure in kinds.items():
                rounds[kind].append(measure(cluster))
    medians = {kind: _median_row(rows) for kind, rows in rounds.items()}
    noop, ours, http = medians["noop"], medians["dspyq"], medians.get("http")
    summary: dict[str, Any] = {
        "median rounds": {kind: row["rounds_ms_per_job"] for kind, row in medians.items()},
        "batch ratio dspyq/noop (ms per job)": round(ours["ms_per_job"] / noop["ms_per_job"], 2),
        "lone-job ratio dspyq/noop (p50 latency)": round(
            ours["lone_p50_ms"] / noop["lone_p50_ms"], 2
        ),
    }
    if http is not None:
        summary["batch ratio dspyq/raw-http (ms per job)"] = round(
            ours["ms_per_job"] / http["ms_per_job"], 2
        )
        summary["lone-job ratio dspyq/raw-http (p50)"] = round(
            ours["lone_p50_ms"] / http["lone_p50_ms"], 2
        )
    batch_ratio = ours["ms_per_job"] / noop["ms_per_job"]
    lone_ratio = ours["lone_p50_ms"] / http["lone_p50_ms"] if http is not None else None
    summary["target"] = (
        f"batch <= {BATCH_TARGET}x the no-op; lone-job p50 <= {LONE_TARGET}x the bare HTTP task"
    )
    summary["met"] = {
        "batch": batch_ratio <= BATCH_TARGET,
        "lone": None if lone_ratio is None else lone_ratio <= LONE_TARGET,
    }
    summary["elapsed_s"] = round(time.monotonic() - started, 1)
    report.print(summary)


if __name__ == "__main__":
    main()

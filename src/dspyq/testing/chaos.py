"""Faults on purpose, and the checks that nothing was lost or recorded twice.

:func:`run_worker_chaos` sends a batch of jobs to a :class:`~dspyq.testing.cluster.Cluster`
while a thread SIGKILLs a random worker every few seconds and starts a replacement;
:func:`audit_batch` then reads the SQL store and says, job by job, whether each one ran
to exactly one succeeded execution row and exactly one completion event. The integration
test runs a small batch, ``bench/chaos_workers.py`` a large one.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from dspyq.api_client import Job
from dspyq.core.predict import Predict
from dspyq.store import make_engine
from dspyq.store.models import EventRecord, ExecutionRecord
from dspyq.testing.cluster import Cluster

__all__ = ["BatchAudit", "ChaosReport", "audit_batch", "run_worker_chaos"]


@dataclass
class BatchAudit:
    """What the store holds for a batch of jobs, and what is wrong with it."""

    jobs: int
    rows: int = 0
    succeeded: int = 0
    attempts: int = 0
    completes: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def redeliveries(self) -> int:
        """Attempts beyond the first, over the batch: jobs taken over from dead workers."""
        return self.attempts - self.rows


def audit_batch(database_url: str, jobs: list[Job]) -> BatchAudit:
    """Check that every job has one succeeded row, one completion event, no error event."""
    ids = {job.id for job in jobs}
    correlation_ids = [job.correlation_id for job in jobs]
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(
                    col(ExecutionRecord.task_id),
                    col(ExecutionRecord.status),
                    col(ExecutionRecord.attempts),
                ).where(col(ExecutionRecord.correlation_id).in_(correlation_ids))
            ).all()
            events = conn.execute(
                select(col(EventRecord.event_type), col(EventRecord.data)).where(
                    col(EventRecord.correlation_id).in_(correlation_ids)
                )
            ).all()
    finally:
        engine.dispose()
    audit = BatchAudit(jobs=len(jobs), rows=len(rows))
    per_task = Counter(task_id for task_id, _, _ in rows)
    audit.problems += [f"{t}: {n} execution rows" for t, n in per_task.items() if n != 1]
    audit.problems += [f"{t}: no execution row" for t in sorted(ids - set(per_task))]
    for task_id, status, attempts in rows:
        audit.attempts += int(attempts)
        if status == "succeeded":
            audit.succeeded += 1
        else:
            audit.problems.append(f"{task_id}: status {status}")
    completes = Counter(
        str(data.get("task_id")) for kind, data in events if kind == "module_execution_complete"
    )
    audit.completes = sum(completes.values())
    audit.problems += [f"{t}: {n} completion events" for t, n in completes.items() if n != 1]
    audit.problems += [f"{t}: no completion event" for t in sorted(ids - set(completes))]
    errors = [data.get("task_id") for kind, data in events if kind == "module_execution_error"]
    audit.problems += [f"{t}: an error event" for t in errors]
    return audit


@dataclass
class ChaosReport:
    """How a chaos run went: the audit, the kills, the time, and what the client saw."""

    audit: BatchAudit
    kills: int
    seconds: float
    wrong_answers: list[str]
    kill_log: list[str]

    @property
    def ok(self) -> bool:
        return not self.audit.problems and not self.wrong_answers


def _killer(
    cluster: Cluster,
    names: list[str],
    stop: threading.Event,
    every: tuple[float, float],
    concurrency: int,
    rng: random.Random,
    log: list[str],
) -> None:
    """Until ``stop``: wait a random while, SIGKILL a random ready worker, start another.

    Replacements start in the background; a worker is killed only once it is ready and
    only while another one is, so the batch always has somewhere to run.
    """
    started = time.monotonic()
    ready = set(names)
    lock = threading.Lock()

    def become_ready(name: str) -> None:
        try:
            cluster.wait_ready(name, timeout=90)
        except (AssertionError, KeyError):
            return  # killed again, or the run is over
        with lock:
            ready.add(name)

    while not stop.wait(rng.uniform(*every)):
        with lock:
            if len(ready) < 2:
                continue
            name = rng.choice(sorted(ready))
            ready.discard(name)
        cluster.kill(name)
        log.append(f"{time.monotonic() - started:6.1f}s killed {name}")
        cluster.start_worker(name, concurrency=concurrency, wait=False)
        threading.Thread(target=become_ready, args=(name,), daemon=True).start()


def run_worker_chaos(
    cluster: Cluster,
    jobs: int,
    *,
    workers: int = 3,
    concurrency: int = 4,
    kill_every: tuple[float, float] = (1.5, 4.0),
    timeout: float = 600.0,
    seed: int = 0,
    submit_over: float = 0.0,
) -> ChaosReport:
    """Run ``jobs`` Predict jobs on ``workers`` workers, killing one every ``kill_every`` s.

    The jobs are sent with ``Client.map`` at once, or in groups of ten spread evenly
    over ``submit_over`` seconds (jobs keep arriving while workers die).

    The cluster's fake LM is given one answer per question; the report says whether the
    client got each job's own answer and what :func:`audit_batch` found in the store.
    """
    rng = random.Random(seed)
    server = cluster.fake_lm
    for i in range(jobs):
        server.answer_fields({"answer": f"A{i}"}, match=f"\\bQ{i}\\b")
    names = [f"chaos{i}" for i in range(workers)]
    for name in names:
        cluster.start_worker(name, concurrency=concurrency, wait=False)
    for name in names:
        cluster.wait_ready(name, timeout=60)
    stop = threading.Event()
    kill_log: list[str] = []
    started = time.monotonic()
    killer = threading.Thread(
        target=_killer,
        args=(cluster, names, stop, kill_every, concurrency, rng, kill_log),
        daemon=True,
    )
    killer.start()
    program = Predict("question -> answer")
    groups = (
        [range(i, min(i + 10, jobs)) for i in range(0, jobs, 10)] if submit_over else [range(jobs)]
    )
    submitted: list[Job] = []
    for n, group in enumerate(groups):
        time.sleep(max(0.0, started + n * submit_over / len(groups) - time.monotonic()))
        submitted += cluster.client.map(
            program, [{"question": f"Q{i}"} for i in group], lm="openai/m"
        )
    wrong: list[str] = []
    try:
        deadline = started + timeout
        for i, job in enumerate(submitted):
            answer: Any = job.result(timeout=max(1.0, deadline - time.monotonic())).answer
            if answer != f"A{i}":
                wrong.append(f"job {i}: {answer!r}")
    finally:
        stop.set()
        killer.join(timeout=90)
    seconds = time.monotonic() - started
    return ChaosReport(
        audit=audit_batch(cluster.settings.database_url, submitted),
        kills=len(kill_log),
        seconds=seconds,
        wrong_answers=wrong,
        kill_log=kill_log,
    )

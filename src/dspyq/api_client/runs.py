"""Optimization runs from the client: start one on the queue, follow it, get its program.

``client.optimize(...)`` validates everything a worker will need (the optimizer is one
runs support, its metric has an import path, the examples are JSON), records the run
and sends its coordinator to ``dspyq.optimize``; the returned :class:`Run` reads the
run's row for its progress and loads the best program from the registry at the end.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dspyq.api_client.submit import check_models
from dspyq.core.example import Example
from dspyq.core.module import Module
from dspyq.core.program import program_to_spec
from dspyq.errors import (
    DspyqError,
    InputError,
    JobCancelledError,
    JobTimeoutError,
    new_correlation_id,
)
from dspyq.optimize.adaptive import AdaptiveOptimizer
from dspyq.optimize.registry import optimizer_name
from dspyq.optimize.teleprompter import Teleprompter
from dspyq.store.models import TERMINAL_RUN_STATUSES, OptimizationRunRecord
from dspyq.store.runs import RunStore
from dspyq.tasks.metrics import Metric, metric_path
from dspyq.tasks.mipro_run import MIPRO, check_mipro_run
from dspyq.tasks.optimization import (
    INSTRUCTION_SEARCH,
    ExampleJSON,
    RunCheckpoint,
    RunPlan,
    has_round_strategy,
    only_predictor_name,
    optimizer_config,
)
from dspyq.tasks.protocol import DEFAULT_CANDIDATES_PER_ROUND, OPTIMIZE_QUEUE, RUN_TASK

if TYPE_CHECKING:
    from dspyq.api_client.client import Client

_POLL_SECONDS = 0.2


def _examples(name: str, examples: Sequence[Example]) -> list[ExampleJSON]:
    found = []
    for index, example in enumerate(examples):
        if not isinstance(example, Example):
            raise InputError(f"{name}[{index}] is a {type(example).__name__}, not an Example")
        if not example.inputs().keys():
            raise InputError(f"{name}[{index}] has no inputs; call .with_inputs(...) on it")
        try:
            json.dumps(dict(example.items()))
        except (TypeError, ValueError) as exc:
            raise InputError(f"{name}[{index}] holds values that are not JSON ({exc})") from None
        found.append(ExampleJSON.of(example))
    return found


def start_run(
    client: Client,
    optimizer: Teleprompter,
    program: Module,
    *,
    trainset: Sequence[Example],
    valset: Sequence[Example] | None,
    lm: str,
    teacher_lm: str | None,
    metric: Metric | str | None,
    budget_usd: float | None,
    max_lm_calls: int | None,
    run_name: str | None,
    candidates_per_round: int,
    lm_kwargs: dict[str, Any],
    compile_options: dict[str, Any] | None = None,
) -> Run:
    """Validate, record the run and send its coordinator (see :meth:`Client.optimize`)."""
    if not isinstance(program, Module):
        raise InputError(f"optimize() takes a dspyq Module, not {type(program).__name__}")
    if isinstance(optimizer, AdaptiveOptimizer):
        from dspyq.api_client.adaptive_run import start_adaptive_run

        return start_adaptive_run(
            client,
            optimizer,
            program,
            trainset=trainset,
            valset=valset,
            lm=lm,
            teacher_lm=teacher_lm,
            metric=metric,
            budget_usd=budget_usd,
            max_lm_calls=max_lm_calls,
            run_name=run_name,
            candidates_per_round=candidates_per_round,
            lm_kwargs=lm_kwargs,
            compile_options=compile_options,
        )
    name = optimizer_name(type(optimizer))
    settings = optimizer_config(optimizer, compile_options)
    if name == INSTRUCTION_SEARCH:
        only_predictor_name(program)
    if name == MIPRO:
        check_mipro_run(settings, program)
    chosen = metric if metric is not None else getattr(optimizer, "metric", None)
    if chosen is None:
        raise InputError(
            f"{type(optimizer).__name__} has no metric to score candidates with; pass metric="
        )
    path = metric_path(chosen)
    check_models(client, [lm] + ([teacher_lm] if teacher_lm else []))
    train = _examples("trainset", trainset)
    if not train:
        raise InputError("trainset is empty")
    val = _examples("valset", valset) if valset is not None else train
    if candidates_per_round < 1:
        raise InputError(f"candidates_per_round must be at least 1, got {candidates_per_round}")
    run_id = uuid.uuid4().hex
    spec = program_to_spec(program)
    plan = RunPlan(
        optimizer=name,
        settings=settings,
        compile_options={} if has_round_strategy(name) else dict(compile_options or {}),
        metric=path,
        program=spec.model_dump(mode="json"),
        trainset=train,
        valset=val,
        lm=lm,
        lm_kwargs=lm_kwargs,
        teacher_lm=teacher_lm,
        run_name=run_name or f"run-{run_id}",
        budget_usd=budget_usd,
        max_lm_calls=max_lm_calls,
        candidates_per_round=candidates_per_round,
        valset_given=valset is not None,
    )
    RunStore(client.engine).create(
        run_id,
        correlation_id=new_correlation_id(),
        optimizer=plan.optimizer,
        config=plan.model_dump(mode="json"),
        program=spec.kind,
        lm=lm,
    )
    client.app.send_task(
        RUN_TASK, kwargs={"run_id": run_id}, queue=OPTIMIZE_QUEUE, task_id=f"{run_id}-start"
    )
    return Run(client, run_id)


class Run:
    """One optimization run: ``progress()``, ``wait()``, ``cancel()``, ``result()``."""

    def __init__(self, client: Client, run_id: str) -> None:
        self._client = client
        self.id = run_id

    def __repr__(self) -> str:
        return f"Run(id={self.id!r})"

    def record(self) -> OptimizationRunRecord:
        """The run's row as it is now."""
        found = RunStore(self._client.engine).get(self.id)
        if found is None:
            raise InputError(f"no optimization run {self.id}", context={"run_id": self.id})
        return found

    @property
    def status(self) -> str:
        """pending, running, succeeded, failed, cancelled or budget_exhausted."""
        return self.record().status

    @property
    def correlation_id(self) -> str:
        return self.record().correlation_id

    def progress(self) -> dict[str, Any]:
        """Iterations done out of the planned total, best score, status and spend."""
        record = self.record()
        checkpoint = RunCheckpoint.model_validate(record.checkpoint or {})
        plan = RunPlan.model_validate(record.config)
        return {
            "status": record.status,
            "iterations": record.iterations,
            "total": plan.total(checkpoint),
            "best_score": record.best_score,
            "rounds_done": checkpoint.round,
            "lm_calls": checkpoint.lm_calls,
            "cost_usd": checkpoint.cost_usd,
            "stop_reason": record.stop_reason,
        }

    def wait(self, timeout: float | None = None, progress: bool = False) -> str:
        """Wait until the run ends (a rich bar on stderr with ``progress``); its status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=not progress,
        )
        with bar:
            task = bar.add_task("Optimizing", total=None)
            while True:
                state = self.progress()
                best = state["best_score"]
                bar.update(
                    task,
                    total=state["total"],
                    completed=state["iterations"],
                    description=f"Optimizing ({state['status']}, best: {best})",
                )
                if state["status"] in TERMINAL_RUN_STATUSES:
                    return str(state["status"])
                if deadline is not None and time.monotonic() > deadline:
                    raise JobTimeoutError(
                        f"optimization run {self.id} did not end within {timeout} s "
                        f"(status: {state['status']})",
                        context={"run_id": self.id, "timeout": timeout},
                    )
                time.sleep(_POLL_SECONDS)

    def cancel(self) -> bool:
        """Stop the run after its current round; False if it had already ended."""
        return RunStore(self._client.engine).cancel(self.id)

    def result(self, timeout: float | None = None) -> Module:
        """The best program the run found (once it ended), loaded from the registry."""
        status = self.wait(timeout)
        record = self.record()
        if status == "cancelled":
            raise JobCancelledError(
                f"optimization run {self.id} was cancelled", context={"run_id": self.id}
            )
        saved = RunCheckpoint.model_validate(record.checkpoint or {}).saved
        if saved is None:
            raise DspyqError(
                f"optimization run {self.id} ended {status} without a program: "
                f"{record.stop_reason}",
                correlation_id=record.correlation_id,
                context={"run_id": self.id, "status": status},
            )
        return self._client.load_program(str(saved["name"]), int(saved["version"]))


__all__ = ["DEFAULT_CANDIDATES_PER_ROUND", "Run", "start_run"]

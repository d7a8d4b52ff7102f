"""``dspyq runs``: list optimization runs, or show one with every iteration.

``dspyq runs`` lists recent runs and ``dspyq runs show RUN_ID`` shows one run's
settings, outcome and iterations. Each takes ``--json`` for scripts.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from dspyq.cli import _common
from dspyq.cli._common import USAGE_ERROR, JsonOption, app, fail, print_json, stdout

if TYPE_CHECKING:
    from dspyq.api_client import Client
    from dspyq.store.models import OptimizationRunRecord


def run_summary(record: OptimizationRunRecord, total: int) -> dict[str, Any]:
    """A run's outcome as ``--json`` prints it."""
    saved = (record.checkpoint or {}).get("saved")
    return {
        "run_id": record.id,
        "optimizer": record.optimizer,
        "status": record.status,
        "best_score": record.best_score,
        "iterations": record.iterations,
        "total": total,
        "stop_reason": record.stop_reason,
        "program": saved,
        "correlation_id": record.correlation_id,
    }


def print_run(record: OptimizationRunRecord, summary: dict[str, Any]) -> None:
    """A run's outcome in two or three lines."""
    saved = summary.get("program")
    stdout.print(f"[bold]Run {record.id}[/] ({record.optimizer}) - {record.status}")
    stdout.print(
        f"best score {_score(record.best_score)} after {record.iterations} of "
        f"{summary['total']} iterations; {escape(record.stop_reason or 'still running')}"
    )
    if saved:
        stdout.print(f"best program saved as {saved['name']} version {saved['version']}")


runs_app = typer.Typer(
    help="List optimization runs, or show one with its iterations.", no_args_is_help=False
)
app.add_typer(runs_app, name="runs")


def _when(record: OptimizationRunRecord) -> str:
    return record.created_at.strftime("%Y-%m-%d %H:%M:%S")


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


@runs_app.callback(invoke_without_command=True)
def runs(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="How many runs, newest first.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """List optimization runs, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    from dspyq.store.runs import RunStore

    with _common.errors_as_one_line():
        client = _common.connected_client()
        records = RunStore(client.engine).list(limit=limit)
    if as_json:
        print_json([run_summary(r, r.iterations) | {"created_at": r.created_at} for r in records])
        return
    if not records:
        stdout.print("No optimization runs yet. Start one with: dspyq optimize ...")
        return
    table = Table(title="Optimization runs")
    for column in ("run", "optimizer", "status", "best", "iterations", "started", "why it ended"):
        table.add_column(column, overflow="fold")
    for r in records:
        table.add_row(
            r.id, r.optimizer, r.status, _score(r.best_score), str(r.iterations), _when(r),
            escape(r.stop_reason or ""),
        )  # fmt: skip
    stdout.print(table)


def _iterations(client: Client, record: OptimizationRunRecord) -> list[dict[str, Any]]:
    found = [
        e.data for e in client.events(record.correlation_id)
        if e.event_type == "optimization_iteration"
    ]  # fmt: skip
    return sorted(found, key=lambda d: int(d.get("iteration", 0)))


@runs_app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(help="The run's id (from dspyq runs).")],
    as_json: JsonOption = False,
) -> None:
    """Show one run: its settings, outcome and every iteration."""
    from dspyq.store.runs import RunStore

    with _common.errors_as_one_line():
        client = _common.connected_client()
        record = RunStore(client.engine).get(run_id)
        if record is None:
            fail(f"no optimization run {run_id!r} (see dspyq runs)", USAGE_ERROR)
        total = client.run(run_id).progress()["total"]
        iterations = _iterations(client, record)
    summary = run_summary(record, total)
    if as_json:
        settings = (record.config or {}).get("settings", {})
        print_json(summary | {"settings": settings, "iterations": iterations})
        return
    print_run(record, summary)
    table = Table(title="Iterations")
    for column in ("#", "round", "score", "best", "candidate", "error"):
        table.add_column(column, overflow="fold")
    for d in iterations:
        candidate = str(d.get("candidate_instruction") or "")
        if d.get("params"):
            kind = "full" if d.get("full_eval") else "minibatch"
            candidate = f"{json.dumps(d['params'])} ({kind}) {candidate}"
        table.add_row(
            str(d.get("iteration")), str(d.get("round", "")), _score(d.get("evaluation_score")),
            _score(d.get("best_score")), escape(candidate[:160]), escape(str(d.get("error") or "")),
        )  # fmt: skip
    stdout.print(table)

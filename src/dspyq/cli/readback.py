"""Commands that read back what jobs did, from the SQL store the workers write.

``dspyq events <correlation-id>`` draws a job's trace as a tree; ``dspyq executions``
lists recent executions. Each takes ``--json`` for scripts. Neither creates a database.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlmodel import col, select

from dspyq.cli._common import (
    RUNTIME_ERROR,
    USAGE_ERROR,
    JsonOption,
    app,
    errors_as_one_line,
    fail,
    print_json,
    stdout,
)
from dspyq.events import Event
from dspyq.settings import Settings, get_settings

STATUSES = ("pending", "running", "succeeded", "failed")


def _check_database(settings: Settings) -> None:
    """Reading commands never create a database: a missing SQLite file is an error."""
    try:
        url = make_url(settings.database_url)
    except ArgumentError:
        fail(f"DSPYQ_DATABASE_URL {settings.database_url!r} is not a database URL", USAGE_ERROR)
    path = url.database if url.get_backend_name() == "sqlite" else None
    if path and path != ":memory:" and not Path(path).exists():
        fail(
            f"no database at {url.database}: run a job first, or point "
            "DSPYQ_DATABASE_URL at the workers' database",
            RUNTIME_ERROR,
        )


# --- reading back ----------------------------------------------------------------------


@app.command()
def events(
    correlation_id: Annotated[str, typer.Argument(help="The job's correlation id.")],
    as_json: JsonOption = False,
) -> None:
    """Show a job's trace: its executions (hops) and their LM calls, timings, tokens, cost."""
    from dspyq.store import EventStore, ExecutionStore, make_engine

    settings = get_settings()
    _check_database(settings)
    with errors_as_one_line():
        engine = make_engine(settings.database_url)
        try:
            found = EventStore(engine).by_correlation(correlation_id)
            rows = ExecutionStore(engine).list(correlation_id=correlation_id, limit=1000)
        finally:
            engine.dispose()
    if not found:
        fail(f"no events recorded for correlation id {correlation_id!r}", RUNTIME_ERROR)
    if as_json:
        print_json(
            {
                "correlation_id": correlation_id,
                "executions": [row.model_dump(mode="json") for row in rows],
                "events": [event.model_dump(mode="json") for event in found],
            }
        )
        return
    stdout.print(trace_tree(correlation_id, found, rows))


def trace_tree(correlation_id: str, found: Sequence[Event], rows: Sequence[Any]) -> Tree:
    """The events of one correlation id as a tree.

    Each execution is a branch under the execution that spawned it (a multi-hop job's
    decompose step and hops sit under the job), holding its LM calls and other events.
    """
    start = found[0].timestamp
    by_task = {row.task_id: row for row in rows}
    tree = Tree(f"[bold]correlation[/] {escape(correlation_id)}")
    branches: dict[str, Tree] = {}

    methods = {
        str(e.data.get("task_id")): str(e.data.get("method", ""))
        for e in found
        if e.event_type == "module_execution_start"
    }

    def branch(task_id: str) -> Tree:
        if task_id not in branches:
            row = by_task.get(task_id)
            parent_id = str(getattr(row, "parent_id", None) or "")
            parent = branch(parent_id) if parent_id in by_task and parent_id != task_id else tree
            label = _execution_label(task_id, row, methods.get(task_id, ""))
            branches[task_id] = parent.add(label)
        return branches[task_id]

    for event in found:
        task_id = event.data.get("task_id")
        owner = str(task_id) if event.event_type.startswith("module_execution") else None
        owner = owner or event.parent_id
        known = owner is not None and (owner in by_task or owner in branches)
        if event.event_type == "module_execution_start" and owner is not None:
            branch(owner)
            continue
        parent = branch(owner) if known and owner is not None else tree
        offset = f"[dim]+{(event.timestamp - start).total_seconds():.3f}s[/]"
        parent.add(f"{offset} {_event_label(event)}")
    return tree


def _execution_label(task_id: str, row: Any, method: str = "") -> str:
    job, _, step = task_id.partition(":")
    short = job[:12] + (f":{step}" if step else "")
    if row is None:
        return f"[bold]execution[/] [dim]task {escape(short)}[/]"
    colour = {"succeeded": "green", "failed": "red"}.get(row.status, "yellow")
    name = row.module_type or "execution"
    if method and method != "forward":
        name += f".{method}"
    parts = [
        f"[bold]{escape(name)}[/] [dim]task {escape(short)}[/]",
        f"[{colour}]{row.status}[/]",
        escape(row.lm or ""),
    ]
    if row.duration_ms is not None:
        parts.append(f"{row.duration_ms:.0f} ms")
    parts.append(f"{row.input_tokens}→{row.output_tokens} tokens")
    parts.append(f"${row.cost_usd:.6f}")
    return " · ".join(part for part in parts if part)


def _event_label(event: Event) -> str:
    data = event.data
    kind = event.event_type
    if kind == "lm_request":
        parts = [
            f"[bold]LM call[/] {escape(str(data.get('model', '')))}",
            f"{float(data.get('duration_ms') or 0):.0f} ms",
            f"{data.get('input_tokens', 0)}→{data.get('output_tokens', 0)} tokens",
            f"${float(data.get('cost_usd') or 0):.6f}",
        ]
        if data.get("cache_hit"):
            parts.append("[cyan]cache hit[/]")
        if data.get("stream"):
            parts.append("streamed")
        status = str(data.get("status", "ok"))
        if status != "ok":
            parts.append(f"[red]{escape(status)}[/]")
        return " · ".join(parts)
    if kind == "module_execution_complete":
        return f"[green]complete[/] {float(data.get('duration_ms') or 0):.0f} ms"
    if kind == "module_execution_error":
        error = data.get("error") or {}
        return f"[red]error[/] {escape(str(error.get('type', '')))}: {escape(str(error.get('message', '')))[:200]}"
    if kind == "parse_retry":
        return f"[yellow]parse retry[/] {data.get('attempt')}/{data.get('max_parse_retries')} ({escape(str(data.get('outcome')))})"
    if kind == "lm_fallback":
        return f"[yellow]fallback[/] {escape(str(data.get('from_lm')))} → {escape(str(data.get('to_lm')))}"
    return escape(kind)


@app.command()
def executions(
    status: Annotated[
        str | None, typer.Option(help="Only this status: pending, running, succeeded, failed.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """List recent executions, newest first."""
    if status is not None and status not in STATUSES:
        fail(f"unknown --status {status!r}; choose one of: {', '.join(STATUSES)}", USAGE_ERROR)
    settings = get_settings()
    _check_database(settings)
    with errors_as_one_line():
        rows = _recent_executions(settings, status, limit)
    if as_json:
        print_json([row.model_dump(mode="json") for row in rows])
        return
    if not rows:
        stdout.print("[dim]no executions recorded[/]")
        return
    table = Table(title=f"{len(rows)} most recent executions")
    for name, justify in [
        ("created", "left"), ("module", "left"), ("lm", "left"), ("status", "left"),
        ("ms", "right"), ("tokens", "right"), ("cost $", "right"), ("correlation", "left"),
    ]:  # fmt: skip
        # Only the correlation id may fold: it is what `dspyq events` takes, never cut short.
        folds = name == "correlation"
        table.add_column(
            name,
            justify=justify,  # type: ignore[arg-type]
            no_wrap=not folds,
            overflow="fold" if folds else "ellipsis",
        )
    colours = {"succeeded": "green", "failed": "red"}
    for row in rows:
        table.add_row(
            row.created_at.strftime("%m-%d %H:%M:%S"),
            escape(row.module_type or ""),
            escape(row.lm or ""),
            f"[{colours.get(row.status, 'yellow')}]{row.status}[/]",
            "" if row.duration_ms is None else f"{row.duration_ms:.0f}",
            f"{row.input_tokens}→{row.output_tokens}",
            f"{row.cost_usd:.6f}",
            escape(row.correlation_id or ""),
        )
    stdout.print(table)


def _recent_executions(settings: Settings, status: str | None, limit: int) -> list[Any]:
    from dspyq.store import ExecutionRecord, make_engine
    from dspyq.store.engine import read_connection

    engine = make_engine(settings.database_url)
    try:
        query = select(ExecutionRecord).order_by(
            col(ExecutionRecord.created_at).desc(), col(ExecutionRecord.id).desc()
        )
        if status is not None:
            query = query.where(col(ExecutionRecord.status) == status)
        with read_connection(engine, "list recent executions") as conn:
            rows = conn.execute(query.limit(limit)).mappings().all()
        return [ExecutionRecord.model_validate(dict(row)) for row in rows]
    finally:
        engine.dispose()

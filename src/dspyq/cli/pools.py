"""``dspyq pools``: every pool's workers, queue, breaker, rate-limit use and error rate.

Only renders: the figures come from :meth:`dspyq.Client.pools`.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from dspyq.cli._common import RUNTIME_ERROR, USAGE_ERROR, app, fail, stdout
from dspyq.errors import DspyqError

_BREAKER_STYLE = {"closed": "green", "half-open": "yellow", "open": "bold red"}


@app.command()
def pools(
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    all_pools: Annotated[
        bool, typer.Option("--all", help="Also list configured pools nobody serves.")
    ] = False,
    minutes: Annotated[float, typer.Option(help="Window of the error rate, in minutes.")] = 15.0,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for workers to answer.")] = 1.0,
) -> None:
    """List live pools: workers, queue depth, breaker, rate-limit use, recent error rate."""
    from dspyq.api_client import Client

    if minutes <= 0 or timeout <= 0:
        fail("--minutes and --timeout must be positive", USAGE_ERROR)
    try:
        with Client() as client:
            statuses = client.pools(window_minutes=minutes, timeout=timeout)
    except DspyqError as exc:
        fail(exc.message, RUNTIME_ERROR)
    shown = [s for s in statuses if all_pools or s.live]
    if json_output:
        stdout.print_json(json.dumps([s.to_json() for s in shown]))
        return
    if not shown:
        stdout.print("No live pools: no worker answered and no queue holds jobs (--all lists all).")
        return
    table = Table(title=f"dspyq pools (errors over the last {minutes:g} min)")
    for column in ("Pool", "Workers", "Queued", "Breaker", "Rate limit", "Errors"):
        table.add_column(column, justify="right" if column == "Queued" else "left")
    for status in shown:
        workers = (
            "\n".join(
                w.name if w.active_jobs is None else f"{w.name} ({w.active_jobs} running)"
                for w in status.workers
            )
            or "[dim]none[/]"
        )
        breaker = "-"
        if status.breaker is not None:
            state = status.breaker.state
            breaker = f"[{_BREAKER_STYLE.get(state, 'white')}]{state}[/]"
            if status.breaker.fail_counter:
                breaker += f" ({status.breaker.fail_counter}/{status.breaker.fail_max} failures)"
            if status.breaker.retry_after:
                breaker += f", probe in {status.breaker.retry_after:.0f}s"
        limit = "-"
        if status.rate_limit is not None:
            usage = status.rate_limit
            limit = f"{usage.requests}/{usage.limit} per {usage.period:g}s"
            if usage.tokens_per_minute:
                limit += f", {usage.tokens}/{usage.tokens_per_minute} tok/min"
            limit += f" ({usage.utilization:.0%})"
        errors = "-"
        if status.error_rate is not None:
            errors = (
                f"{status.error_rate:.0%} ({status.recent_failures}/{status.recent_executions})"
            )
        table.add_row(status.pool, workers, str(status.queued), breaker, limit, errors)
    stdout.print(table)

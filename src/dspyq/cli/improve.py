"""``dspyq improve NAME --metric pkg.mod:fn [--every 1h]``: re-optimize a deployed program
from its feedback, once or on a schedule (see :mod:`dspyq.api_client.improve`)."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from dspyq.cli._common import (
    JsonOption,
    app,
    connected_client,
    errors_as_one_line,
    parse_duration,
    print_json,
    stdout,
)


@app.command()
def improve(
    name: Annotated[str, typer.Argument(help="The saved program's name.")],
    metric: Annotated[str, typer.Option("--metric", help="pkg.module:function scoring answers.")],
    alias: Annotated[str, typer.Option("--alias")] = "production",
    min_gain: Annotated[float, typer.Option("--min-gain")] = 0.0,
    min_feedback: Annotated[int, typer.Option("--min-feedback")] = 20,
    canary: Annotated[
        float, typer.Option("--canary", help="Share of traffic first; 0 deploys to all.")
    ] = 0.1,
    every: Annotated[
        str | None, typer.Option("--every", help="Run again every 90s / 30m / 1h / 1d.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Build a trainset from feedback, optimize, and deploy the candidate only if it is better."""
    period = parse_duration(every, "--every") if every is not None else None
    stop = threading.Event()
    if period is not None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    with errors_as_one_line():
        client = connected_client()
        try:
            while True:
                outcome = client.improve(
                    name,
                    alias=alias,
                    metric=metric,
                    min_gain=min_gain,
                    min_feedback=min_feedback,
                    canary=canary or None,
                )
                if as_json:
                    print_json(outcome.model_dump(mode="json"))
                else:
                    stdout.print(f"[bold]{outcome.status}[/]: {outcome.reason}")
                if period is None or stop.wait(period):
                    break
        finally:
            client.close()

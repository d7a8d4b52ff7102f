"""``dspyq evaluate``: a devset scored on the worker pools, as ``Client.evaluate`` does.

``dspyq evaluate myapp.programs:qa --devset dev.jsonl --metric myapp.metrics:exact``
sends the examples in batch messages, shows the running metric on stderr as outcomes
arrive, and prints the score with the evaluation's id (its rows: ``evaluation_rows``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dspyq.cli._common import (
    USAGE_ERROR,
    JsonOption,
    app,
    connected_client,
    errors_as_one_line,
    fail,
    print_json,
    stdout,
)
from dspyq.cli.optimize import input_names, load_program, read_examples


@app.command()
def evaluate(
    program: Annotated[
        str,
        typer.Argument(help="The program: pkg.module:name, or a saved program's name[@version]."),
    ],
    devset: Annotated[
        Path, typer.Option("--devset", help="Examples to score: a JSON list or JSONL file.")
    ],
    metric: Annotated[
        str, typer.Option("--metric", help="Metric as an import path pkg.module:function.")
    ],
    inputs: Annotated[
        str | None,
        typer.Option("--inputs", help="Input keys, comma-separated (default: the program's)."),
    ] = None,
    lm: Annotated[
        str | None,
        typer.Option("--lm", help="Model as provider/name (default: DSPYQ_DEFAULT_LM)."),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the whole devset.")] = 600.0,
    as_json: JsonOption = False,
) -> None:
    """Score a program on a devset on the workers; prints the score and the evaluation id."""
    with errors_as_one_line():
        client = connected_client()
        student = load_program(client, program)
        keys = [k.strip() for k in inputs.split(",") if k.strip()] if inputs else None
        keys = keys or input_names(student)
        if not keys:
            fail("cannot tell the examples' inputs: pass --inputs question,...", USAGE_ERROR)
        examples = read_examples(devset, keys, "devset")
        result = client.evaluate(
            student, examples, metric, lm, display_progress=not as_json, timeout=timeout
        )
        record = client.evaluation(result.evaluation_id)
    errors = record.errors if record is not None else 0
    if as_json:
        print_json(
            {
                "evaluation_id": result.evaluation_id,
                "correlation_id": result.correlation_id,
                "score": result.score,
                "n": len(examples),
                "errors": errors,
            }
        )
        return
    stdout.print(f"[bold]score[/]        {result.score}", highlight=False)
    stdout.print(f"[bold]examples[/]     {len(examples)} ({errors} failed)", highlight=False)
    stdout.print(f"[bold]evaluation[/]   {result.evaluation_id}", highlight=False)

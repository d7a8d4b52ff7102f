"""Commands for jobs: run or submit a signature through the queue.

``dspyq run "question -> answer" --question "..."`` submits through the queue and waits;
``dspyq submit`` only enqueues. Each takes ``--json`` for scripts; reading back what
happened is :mod:`dspyq.cli.readback` (``dspyq events``, ``dspyq executions``).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from dspyq.cli._common import (
    RUNTIME_ERROR,
    USAGE_ERROR,
    JsonOption,
    app,
    connected_client,
    errors_as_one_line,
    fail,
    one_line,
    print_json,
    stdout,
)
from dspyq.errors import (
    DspyqError,
    JobTimeoutError,
    SignatureError,
)
from dspyq.settings import get_settings

MODULES = {"predict": "Predict", "cot": "ChainOfThought"}
_EXTRA_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}

SignatureArg = Annotated[
    str,
    typer.Argument(
        help='The signature, e.g. "question -> answer", or a saved program: qa@production '
        "(an alias), qa:3 (a version), qa (the latest)."
    ),
]
LMOption = Annotated[
    str | None,
    typer.Option("--lm", help="Model as provider/name (default: DSPYQ_DEFAULT_LM)."),
]
ModuleOption = Annotated[str, typer.Option("--module", help="predict or cot (ChainOfThought).")]


# --- shared pieces ---------------------------------------------------------------------


def _field_pairs(args: Sequence[str]) -> dict[str, str]:
    """``["--question", "What?", "--context=..."]`` -> ``{"question": "What?", ...}``."""
    values: dict[str, str] = {}
    items = list(args)
    while items:
        item = items.pop(0)
        if not item.startswith("--") or len(item) == 2:
            fail(f"unexpected argument {item!r}: give inputs as --field value", USAGE_ERROR)
        name, has_value, value = item[2:].partition("=")
        if not has_value:
            if not items or items[0].startswith("--"):
                fail(f"--{name} needs a value", USAGE_ERROR)
            value = items.pop(0)
        values[name.replace("-", "_")] = value
    return values


def _program(signature: str, module: str, fields: dict[str, str]) -> Any:
    """The program for ``signature``, with ``fields`` checked against its inputs."""
    import dspyq

    if module not in MODULES:
        fail(f"unknown --module {module!r}; choose one of: {', '.join(MODULES)}", USAGE_ERROR)
    try:
        program = getattr(dspyq, MODULES[module])(signature)
    except SignatureError as exc:
        fail(exc.message, USAGE_ERROR)
    expected = list(program.predictors()[0].signature.input_fields)
    unknown = [name for name in fields if name not in expected]
    missing = [name for name in expected if name not in fields]
    if unknown or missing:
        wanted = " ".join(f"--{name} ..." for name in expected)
        problem = (
            f"unknown input {', '.join('--' + n for n in unknown)}"
            if unknown
            else f"missing input {', '.join('--' + n for n in missing)}"
        )
        fail(f"{problem}; {signature!r} takes: {wanted}", USAGE_ERROR)
    return program


@contextmanager
def _job_errors(job: Any) -> Iterator[None]:
    """A job that failed or timed out, as one line that says where to look next."""
    try:
        yield
    except JobTimeoutError as exc:
        hint = (
            "no worker has taken it: is one running for its provider (dspyq worker --pool ...)?"
            if job.status == "pending"
            else f"follow it with: dspyq events {job.correlation_id}"
        )
        fail(f"{one_line(exc.message)}; {hint}", RUNTIME_ERROR)
    except DspyqError as exc:
        fail(
            f"{type(exc).__name__}: {one_line(exc.message)} "
            f"(trace: dspyq events {job.correlation_id})",
            RUNTIME_ERROR,
        )


def _wait(job: Any, timeout: float) -> Any:
    """``job.result(timeout)``, by polling its state.

    A ``result()`` that times out leaves Celery subscribed to the job, and the
    subscription's clean-up at interpreter exit prints a traceback; polling never
    subscribes, and the final ``result()`` of a finished job returns at once.
    """
    deadline = time.monotonic() + timeout
    delay = 0.02
    while job.status in ("pending", "running"):
        if time.monotonic() > deadline:
            raise JobTimeoutError(
                f"job {job.id} did not finish within {timeout:g} s (status: {job.status})",
                correlation_id=job.correlation_id,
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)
    return job.result(timeout=timeout)


def _prepare(ctx: typer.Context, signature: str, module: str) -> tuple[Any, Any, dict[str, str]]:
    """The client, program and inputs of ``run``/``submit``, all checked before sending.

    A saved program's reference (one word, no ``->`` in it) is sent as such: the client
    checks it and the inputs against the version it names, the worker resolves it. Words
    with spaces are a signature, whose error then says what a signature needs."""
    fields = _field_pairs(ctx.args)
    if "->" not in signature and len(signature.split()) == 1:
        from dspyq.program_ref import parse_program_ref

        return connected_client(get_settings()), str(parse_program_ref(signature)), fields
    program = _program(signature, module, fields)
    return connected_client(get_settings()), program, fields


# --- run and submit --------------------------------------------------------------------


@app.command(context_settings=_EXTRA_ARGS)
def run(
    ctx: typer.Context,
    signature: SignatureArg,
    lm: LMOption = None,
    module: ModuleOption = "predict",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the result.")] = 120.0,
    stream: Annotated[
        bool, typer.Option("--stream", help="Print the LM's text as it arrives.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Run a signature on the workers and print its outputs; inputs are --field value pairs.

    Example: dspyq run "question -> answer" --question "What is 2+2?" --lm openai/gpt-4o-mini
    (or a saved program: dspyq run qa@production --question "What is 2+2?")
    """
    with errors_as_one_line():
        client, program, fields = _prepare(ctx, signature, module)
        streamed = client.stream(program, lm=lm, timeout=timeout, **fields) if stream else None
        job = streamed.job if streamed is not None else client.submit(program, lm=lm, **fields)
    with _job_errors(job):
        if streamed is not None:
            prediction = _print_stream(streamed, quiet=as_json)
        else:
            prediction = _wait(job, timeout)
    outputs = dict(prediction.items())
    with errors_as_one_line():
        rows = client.executions(job.correlation_id)
    usage = _usage(rows)
    if as_json:
        print_json(
            {"job_id": job.id, "correlation_id": job.correlation_id, "outputs": outputs, **usage}
        )
        return
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold cyan")
    table.add_column(overflow="fold")
    for name, value in outputs.items():
        table.add_row(name, escape(value if isinstance(value, str) else json.dumps(value)))
    stdout.print(table)
    stdout.print(
        f"[dim]correlation {job.correlation_id} · {usage['lm_calls']} LM call(s) · "
        f"{usage['input_tokens']}→{usage['output_tokens']} tokens · "
        f"${usage['cost_usd']:.6f} · {usage['duration_ms']:.0f} ms[/]",
        highlight=False,
    )


def _print_stream(stream: Any, *, quiet: bool) -> Any:
    """Write the stream's text as it comes (unless ``quiet``); return its Prediction."""
    from dspyq.api_client.stream import StreamChunk

    prediction = None
    for item in stream:
        if not isinstance(item, StreamChunk):
            prediction = item
        elif not quiet:
            sys.stdout.write(item.text)
            sys.stdout.flush()
    if not quiet:
        sys.stdout.write("\n\n")
    return prediction


def _usage(rows: Sequence[Any]) -> dict[str, Any]:
    return {
        "lm_calls": sum(r.lm_calls for r in rows),
        "input_tokens": sum(r.input_tokens for r in rows),
        "output_tokens": sum(r.output_tokens for r in rows),
        "cost_usd": round(sum(r.cost_usd for r in rows), 8),
        "duration_ms": sum(r.duration_ms or 0.0 for r in rows),
    }


@app.command(context_settings=_EXTRA_ARGS)
def submit(
    ctx: typer.Context,
    signature: SignatureArg,
    lm: LMOption = None,
    module: ModuleOption = "predict",
    as_json: JsonOption = False,
) -> None:
    """Enqueue a signature run without waiting; prints the job id and correlation id."""
    with errors_as_one_line():
        client, program, fields = _prepare(ctx, signature, module)
        job = client.submit(program, lm=lm, **fields)
    if as_json:
        print_json({"job_id": job.id, "correlation_id": job.correlation_id})
        return
    stdout.print(f"[bold]job[/]          {job.id}", highlight=False)
    stdout.print(f"[bold]correlation[/]  {job.correlation_id}", highlight=False)
    stdout.print(f"[dim]follow it with: dspyq events {job.correlation_id}[/]", highlight=False)

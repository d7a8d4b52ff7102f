"""Long-running commands: worker pools, the dev stack and the fake LM server.

Thin on purpose: each command validates its options, then hands over to
:mod:`dspyq.workers.launch`, :mod:`dspyq.workers.dev` or
:func:`dspyq.testing.fake_lm.serve`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from dspyq.cli._common import (
    RUNTIME_ERROR,
    USAGE_ERROR,
    app,
    fail,
    pydantic_summary,
    stdout,
)
from dspyq.errors import DspyqError
from dspyq.settings import get_settings


@app.command("fake-lm")
def fake_lm(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    latency: Annotated[float, typer.Option(help="Seconds added to every answer.")] = 0.0,
    error_rate: Annotated[
        float, typer.Option(help="Share of requests answered with a 5xx (0 to 1).")
    ] = 0.0,
    script: Annotated[
        Path | None, typer.Option(help="JSON file of config keys, rules and failures.")
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the fake OpenAI/Anthropic-compatible LM server.

    Runs in the foreground until Ctrl-C; other processes steer it over /_fake/*.
    """
    from dspyq.testing.fake_lm import load_script, serve
    from dspyq.testing.fake_script import FakeConfig, FakeLMState
    from dspyq.workers.dev import ensure_port_free

    loaded: dict[str, Any] | None = None
    try:
        state = FakeLMState(FakeConfig(latency=latency, error_rate=error_rate))
        if script is not None:
            loaded = load_script(script)
            state.apply(loaded)  # validates every key, rule and failure before serving
    except OSError as exc:
        fail(f"cannot read the script {script}: {exc.strerror or exc}", USAGE_ERROR)
    except ValidationError as exc:
        where = f"script {script}" if loaded is not None else "options"
        fail(f"invalid {where}: {pydantic_summary(exc)}", USAGE_ERROR)
    except json.JSONDecodeError as exc:
        fail(f"the script {script} is not valid JSON: {exc}", USAGE_ERROR)
    except ValueError as exc:
        fail(str(exc), USAGE_ERROR)
    try:
        ensure_port_free(host, port, "the fake LM (--port)")
    except DspyqError as exc:
        fail(exc.message, RUNTIME_ERROR)
    serve(
        host=host,
        port=port,
        latency=latency,
        error_rate=error_rate,
        script=loaded,
        log_level=log_level,
    )


@app.command()
def worker(
    pool: Annotated[str, typer.Option(help="Provider pool (a configured provider) or 'optimize'.")],
    concurrency: Annotated[
        int | None, typer.Option(help="Jobs run at once (default 8, 2 for optimize).")
    ] = None,
    exec_pool: Annotated[
        str, typer.Option(help="Celery execution pool: threads, prefork or gevent.")
    ] = "threads",
    hostname: Annotated[
        str | None, typer.Option(help="Celery node name (default <pool>@<this host>).")
    ] = None,
    loglevel: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve Prometheus /metrics on this port (DSPYQ_TELEMETRY__METRICS_PORT)."
        ),
    ] = None,
) -> None:
    """Start a Celery worker for one pool's queue.

    Pool 'openai' consumes dspyq.lm.openai; pool 'optimize' consumes dspyq.optimize.
    """
    from dspyq.workers.launch import run_worker, worker_spec

    settings = get_settings()
    try:
        spec = worker_spec(
            settings,
            pool,
            concurrency=concurrency,
            exec_pool=exec_pool,
            hostname=hostname,
            loglevel=loglevel,
            metrics_port=metrics_port,
        )
    except DspyqError as exc:
        fail(exc.message, USAGE_ERROR)
    try:
        code = run_worker(settings, spec)
    except DspyqError as exc:
        fail(exc.message, RUNTIME_ERROR)
    raise typer.Exit(code)


@app.command()
def dev(
    workers: Annotated[
        str, typer.Option(help="Comma-separated pools to start, one worker each.")
    ] = "openai,anthropic,local,optimize",
    concurrency: Annotated[
        int | None, typer.Option(help="Concurrency of every worker (default per pool).")
    ] = None,
    flower_port: Annotated[int, typer.Option(help="Port of Flower's web UI.")] = 5555,
    fake_lm_port: Annotated[int, typer.Option(help="Port of the fake LM server.")] = 8000,
    fake_lm: Annotated[
        bool, typer.Option(help="Start the fake LM and point every provider at it.")
    ] = True,
    flower_auth: Annotated[
        str | None,
        typer.Option(help="Flower login user:password (default FLOWER_BASIC_AUTH, or random)."),
    ] = None,
) -> None:
    """Run Redis, the fake LM, workers and Flower until Ctrl-C.

    One command for a laptop: SQLite in this directory, logs in .dspyq/logs.
    """
    from dspyq.workers.dev import DevStack, run_foreground

    pools = [name.strip() for name in workers.split(",") if name.strip()]
    try:
        stack = DevStack(
            get_settings(),
            pools=pools,
            concurrency=concurrency,
            flower_port=flower_port,
            fake_lm_port=fake_lm_port,
            fake_lm=fake_lm,
            flower_auth=flower_auth,
        )
    except DspyqError as exc:
        fail(exc.message, USAGE_ERROR)
    try:
        code = run_foreground(stack, stdout)
    except DspyqError as exc:
        fail(exc.message, RUNTIME_ERROR)
    raise typer.Exit(code)

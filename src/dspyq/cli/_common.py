"""What every ``dspyq`` command shares: the Typer app, consoles and one-line errors.

dspyq errors are shown as one line, without a traceback: exit code 2 for a bad option,
1 for a failure at run time.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from dspyq.api_client import Client
    from dspyq.settings import Settings

app = typer.Typer(
    name="dspyq",
    help="dspyq: DSPy programs run by Celery worker pools.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

# soft_wrap: a long error message stays on one line, whatever the terminal width.
stderr = Console(stderr=True, soft_wrap=True)
stdout = Console(soft_wrap=True)

USAGE_ERROR = 2
RUNTIME_ERROR = 1

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def print_json(value: Any) -> None:
    """``value`` as indented JSON on stdout, for scripts (``--json``)."""
    # Plain write: rich would wrap and highlight, and scripts want exact JSON.
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def fail(message: str, code: int) -> NoReturn:
    """Print ``message`` as a one-line error and exit with ``code``."""
    stderr.print(f"[bold red]Error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


ERROR_CHARS = 300
"""Longest error message a command prints (DSPy's parse errors can run to pages)."""


def one_line(message: str) -> str:
    """An error message squeezed onto one line and capped at :data:`ERROR_CHARS`."""
    text = " ".join(message.split())
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"


@contextmanager
def errors_as_one_line() -> Iterator[None]:
    """dspyq errors as one line: a bad request exits 2, anything at run time 1."""
    from dspyq.errors import ConfigurationError, DspyqError, InputError, SignatureError

    try:
        yield
    except (InputError, ConfigurationError, SignatureError) as exc:
        fail(one_line(exc.message), USAGE_ERROR)
    except DspyqError as exc:
        fail(f"{type(exc).__name__}: {one_line(exc.message)}", RUNTIME_ERROR)


def connected_client(settings: Settings | None = None) -> Client:
    """A client whose broker answered, so a dead broker is one line, not a hang."""
    from dspyq.api_client import Client
    from dspyq.errors import BrokerUnavailableError
    from dspyq.resilience.redis_client import redacted_url
    from dspyq.settings import get_settings
    from dspyq.tasks.broker_status import check_broker

    settings = settings or get_settings()
    client = Client(settings)
    try:
        check_broker(client.app)
    except BrokerUnavailableError:
        client.close()
        fail(
            f"the broker at {redacted_url(settings.broker_url)} is unreachable: start it "
            "(dspyq dev runs a Redis) or set DSPYQ_BROKER_URL",
            RUNTIME_ERROR,
        )
    return client


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_SECONDS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, option: str) -> float:
    """``"1h"`` -> 3600.0; ``"90s"``, ``"90"`` (seconds), ``"30m"``, ``"1d"`` likewise."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        fail(f"{option} {text!r} must look like 90s, 30m, 1h or 1d", USAGE_ERROR)
    return float(match.group(1)) * _SECONDS[match.group(2)]


def pydantic_summary(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "value"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)

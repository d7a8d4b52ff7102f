"""What every ``dspyq`` command shares: the Typer app, consoles and one-line errors.

dspyq errors are shown as one line, without a traceback: exit code 2 for a bad option,
1 for a failure at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

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


def fail(message: str, code: int) -> NoReturn:
    """Print ``message`` as a one-line error and exit with ``code``."""
    stderr.print(f"[bold red]Error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def connected_client(settings: Settings | None = None) -> Client:
    """A client whose broker answered a ping, so a dead Redis is one line, not a hang."""
    from dspyq.api_client import Client
    from dspyq.errors import RedisUnavailableError
    from dspyq.resilience.redis_client import redacted_url, redis_from_url
    from dspyq.settings import get_settings

    settings = settings or get_settings()
    try:
        redis_from_url(settings.broker_url).close()
    except RedisUnavailableError:
        fail(
            f"the broker at {redacted_url(settings.broker_url)} is unreachable: start Redis "
            "(dspyq dev runs one) or set DSPYQ_BROKER_URL",
            RUNTIME_ERROR,
        )
    return Client(settings)


def pydantic_summary(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "value"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)

"""``dspyq config show|set|unset``: settings changed while workers run.

``set`` validates the change against the settings it would produce before storing it in
Redis, announces it to every worker and records a ``config_changed`` event;
``show`` prints the effective settings (this environment plus the live overrides) with
secrets masked. See :mod:`dspyq.workers.live_config`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from dspyq.cli._common import RUNTIME_ERROR, USAGE_ERROR, app, fail, stderr, stdout
from dspyq.errors import ConfigurationError, DspyqError
from dspyq.events import Event
from dspyq.settings import Settings, get_settings
from dspyq.settings_live import CONFIG_CHANGED, effective_items, with_overrides

config_app = typer.Typer(
    name="config",
    help="Show the effective settings, or change them on every running worker.",
    no_args_is_help=True,
)
app.add_typer(config_app)


def _store(settings: Settings) -> Any:
    from dspyq.resilience.redis_client import redis_from_url
    from dspyq.workers.live_config import LiveConfigStore

    return LiveConfigStore(redis_from_url(settings.effective_redis_url), settings.key_prefix)


def _record_change(settings: Settings, key: str, value: Any, action: str, version: int) -> None:
    """The ``config_changed`` event, in the SQL events table workers write to."""
    from dspyq.store import EventStore, init_db, make_engine
    from dspyq.workers.live_config import config_correlation_id

    engine = make_engine(settings.database_url)
    try:
        init_db(engine)  # a deployment whose workers never ran has no tables yet
        EventStore(engine).append(
            Event(
                event_type=CONFIG_CHANGED,
                correlation_id=config_correlation_id(version),
                data={"key": key, "value": value, "action": action, "version": version},
            )
        )
    except DspyqError as exc:
        # The change is live already; say so rather than pretend it failed.
        stderr.print(f"[yellow]Warning:[/] change applied but not recorded: {escape(exc.message)}")
    finally:
        engine.dispose()


@config_app.command("set")
def set_(
    key: Annotated[str, typer.Argument(help="Dotted key, e.g. providers.openai.rate_limit.")],
    value: Annotated[str, typer.Argument(help="New value, e.g. 300/m, 30, true or JSON.")],
) -> None:
    """Change a setting on every running worker (and on workers started later)."""
    settings = get_settings()
    try:
        store = _store(settings)
        name, stored, version = store.set(settings, key, value)
    except ConfigurationError as exc:
        fail(exc.message, USAGE_ERROR)
    except DspyqError as exc:
        fail(exc.message, RUNTIME_ERROR)
    _record_change(settings, name, stored, "set", version)
    stdout.print(
        f"{escape(name)} = {escape(json.dumps(stored))} (version {version}; "
        "applied by every running worker)",
        highlight=False,
    )


@config_app.command("unset")
def unset(
    key: Annotated[str, typer.Argument(help="Dotted key whose live override to remove.")],
) -> None:
    """Remove a live override: workers go back to their own environment's value."""
    settings = get_settings()
    try:
        name, version = _store(settings).unset(settings, key)
    except ConfigurationError as exc:
        fail(exc.message, USAGE_ERROR)
    except DspyqError as exc:
        fail(exc.message, RUNTIME_ERROR)
    _record_change(settings, name, None, "unset", version)
    stdout.print(f"{escape(name)} override removed (version {version})", highlight=False)


@config_app.command("show")
def show(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Print the effective settings (environment plus live overrides), secrets masked."""
    settings = get_settings()
    overrides: dict[str, Any] = {}
    version = 0
    try:
        version, overrides = _store(settings).snapshot()
        effective = with_overrides(settings, overrides)
    except ConfigurationError as exc:
        fail(exc.message, RUNTIME_ERROR)
    except DspyqError as exc:
        # Without Redis there are no live overrides to show; the environment still is.
        stderr.print(f"[yellow]Warning:[/] live overrides unknown: {escape(exc.message)}")
        effective = settings
    items = effective_items(effective)
    if as_json:
        payload = {
            "version": version,
            "overrides": sorted(overrides),
            "settings": dict(items),
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    table = Table(title=f"dspyq settings (live version {version})")
    table.add_column("key", style="cyan", overflow="fold")
    table.add_column("value")
    table.add_column("source")
    for name, value in items:
        source = "[bold yellow]live[/]" if name in overrides else ""
        table.add_row(escape(name), escape(json.dumps(value)), source)
    stdout.print(table)

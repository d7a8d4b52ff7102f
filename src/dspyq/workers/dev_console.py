"""``dspyq dev`` in the foreground: start the stack, show its addresses, stop on Ctrl-C."""

from __future__ import annotations

import signal
import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from dspyq.resilience.redis_client import redacted_url

if TYPE_CHECKING:
    from dspyq.workers.dev import DevStack

__all__ = ["run_foreground", "stack_panel"]


class _Stop(Exception):
    """Raised in the main thread by SIGTERM, to stop the stack like Ctrl-C does."""


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop


def stack_panel(stack: DevStack) -> Panel:
    """The addresses a newcomer needs, as a rich panel."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan")
    table.add_column()
    user = stack.flower_auth.partition(":")[0]
    login = stack.flower_auth if stack.flower_auth_generated else f"user {user}"
    table.add_row("Flower", escape(f"{stack.flower_url}  (login {login})"))
    if stack.fake_lm_url:
        table.add_row("Fake LM", escape(f"{stack.fake_lm_url}/v1  (every provider points here)"))
    table.add_row("Broker", escape(stack.broker_url))
    table.add_row("Database", escape(redacted_url(stack.settings.database_url)))
    for pool, hostname in stack.worker_hostnames.items():
        table.add_row(f"worker {escape(pool)}", escape(hostname))
    table.add_row("Logs", escape(str(stack.log_dir)))
    return Panel(table, title="dspyq dev stack", subtitle="Ctrl-C to stop", expand=False)


def run_foreground(stack: DevStack, console: Console, ready_timeout: float = 90.0) -> int:
    """``dspyq dev``: start the stack, show its addresses, and run until Ctrl-C or SIGTERM.

    Returns 0 after a requested stop, 1 when a child died on its own.
    """
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    code = 0
    try:
        with console.status("starting Redis, the fake LM, workers and Flower..."):
            stack.start()
            stack.wait_ready(ready_timeout)
        console.print(stack_panel(stack))
        while (child := stack.exited_child()) is None:
            time.sleep(0.5)
        console.print(
            f"[red]{escape(child.name)} exited with code {child.process.returncode}[/]; "
            f"last lines of {escape(str(child.log_path))}:\n{escape(child.log_tail())}",
            highlight=False,
        )
        code = 1
    except (KeyboardInterrupt, _Stop):
        console.print("stopping the dev stack...")
    finally:
        try:
            stack.stop()
        except (KeyboardInterrupt, _Stop):
            # A second Ctrl-C while workers finish their jobs: stop now, kill what is left.
            stack.stop(timeout=0)
        signal.signal(signal.SIGTERM, previous)
    return code

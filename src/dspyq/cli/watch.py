"""``dspyq watch`` runs the performance watcher; ``dspyq alerts`` lists what it raised.

Several ``dspyq watch`` may run (one per host): they elect a leader in Redis, so each
alert is raised once. ``--metrics-port`` serves the alerts to Prometheus. With
``DSPYQ_WATCH__IMPROVE_ON_ALERT=true`` and ``DSPYQ_WATCH__IMPROVE_METRIC=pkg.mod:fn``,
an alert on a deployed program starts an improvement run for it (``client.improve``).
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from dspyq.cli._common import (
    USAGE_ERROR,
    JsonOption,
    app,
    errors_as_one_line,
    fail,
    print_json,
    stdout,
)
from dspyq.settings import get_settings

if TYPE_CHECKING:
    from dspyq.api_client import Client
    from dspyq.store.models import AlertRecord

logger = logging.getLogger(__name__)


@app.command()
def watch(
    once: Annotated[bool, typer.Option("--once", help="Look at one window and exit.")] = False,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="Serve /metrics (Prometheus) here.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Watch executions in sliding windows; raise alerts and judge canaries."""
    from dspyq.api_client import Client
    from dspyq.resilience.redis_client import redis_from_url
    from dspyq.watch import Watcher

    settings = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with errors_as_one_line():
        client = Client(settings)
        metrics = _serve_metrics(metrics_port) if metrics_port is not None else None
        watcher = Watcher(
            settings,
            client.engine,
            redis_from_url(settings.effective_redis_url),
            metrics=metrics,
            on_alert=ImproveOnAlert(client),
        )
        if once:
            report = watcher.look()
            watcher.lock.release()
            _show_report(report, as_json)
            return
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        limits = settings.watch
        logger.info(
            "watching %.0f s windows every %.0f s", limits.window_seconds, limits.interval_seconds
        )
        watcher.run(stop)
        client.close()


@app.command()
def alerts(
    since: Annotated[
        str | None, typer.Option("--since", help="ISO time, e.g. 2030-01-01T12:00:00Z.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List the alerts the watcher raised (oldest first)."""
    from dspyq.api_client import Client

    moment: datetime | None = None
    if since is not None:
        try:
            moment = datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            fail(f"--since {since!r} is not an ISO time (e.g. 2030-01-01T12:00:00Z)", USAGE_ERROR)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    with errors_as_one_line():
        client = Client(get_settings())
        try:
            found = client.alerts(since=moment)
        finally:
            client.close()
    if as_json:
        print_json([alert.model_dump(mode="json") for alert in found])
        return
    table = Table("raised", "kind", "program", "pool", "observed", "threshold", "window")
    for alert in found:
        program = f"{alert.program_name}:{alert.program_version}" if alert.program_name else "-"
        window = f"{alert.window_start:%H:%M:%S}-{alert.window_end:%H:%M:%S}"
        table.add_row(
            f"{alert.created_at:%Y-%m-%d %H:%M:%S}",
            alert.kind,
            program,
            alert.pool or "-",
            f"{alert.observed:g}",
            f"{alert.threshold:g}",
            window,
        )
    stdout.print(table if found else "no alerts")


class ImproveOnAlert:
    """The watcher's alert hook: an improvement run for the alerting program, when the
    settings ask for it; one at a time per program, in a thread of its own."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.running: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, alert: AlertRecord) -> None:
        limits = self.client.settings.watch
        name = alert.program_name
        if not (limits.improve_on_alert and limits.improve_metric and name):
            return
        with self.lock:
            if name in self.running:
                return
            self.running.add(name)
        threading.Thread(target=self._improve, args=(name,), daemon=True).start()

    def _improve(self, name: str) -> None:
        limits = self.client.settings.watch
        try:
            outcome = self.client.improve(
                name, alias=limits.improve_alias, metric=str(limits.improve_metric)
            )
            logger.info("improvement of %s after an alert: %s", name, outcome.reason)
        except Exception:
            logger.exception("the improvement run of %s after an alert failed", name)
        finally:
            with self.lock:
                self.running.discard(name)


def _serve_metrics(port: int) -> Any:
    from prometheus_client import start_http_server

    from dspyq.telemetry.metrics import WorkerMetrics

    metrics = WorkerMetrics()
    start_http_server(port, registry=metrics.registry)
    return metrics


def _show_report(report: Any, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "window": report.window.as_dict(),
                "leader": report.leader,
                "alerts": [alert.model_dump(mode="json") for alert in report.alerts],
                "canaries": [vars(verdict) for verdict in report.canaries],
            }
        )
        return
    stdout.print(
        f"window {report.window.start:%H:%M:%S}-{report.window.end:%H:%M:%S}: "
        f"{'leader' if report.leader else 'another watcher leads'}, "
        f"{len(report.alerts)} alert(s), {len(report.canaries)} canar(ies)"
    )
    for alert in report.alerts:
        stdout.print(
            f"  {alert.kind} {alert.program_name}:{alert.program_version} ({alert.pool}): "
            f"{alert.observed:g} > {alert.threshold:g}"
        )

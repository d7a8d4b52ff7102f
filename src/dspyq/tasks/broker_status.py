"""Questions to the broker itself, the same on Redis and RabbitMQ: is it up, what waits.

Both go through kombu, so they hold for any broker: a passive ``queue_declare`` answers
a queue's depth on RabbitMQ (messages ready), a plain one on Redis (the lengths of its
priority lists, under the deployment's key prefix).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError

from dspyq.errors import BrokerUnavailableError
from dspyq.resilience.redis_client import redacted_url

__all__ = ["check_broker", "queue_depths"]

CONNECT_TIMEOUT = 3.0


@contextmanager
def _connection(app: Celery, operation: str) -> Iterator[Any]:
    url = str(app.conf.broker_url)
    connection = app.connection_for_read()
    try:
        try:
            connection.ensure_connection(max_retries=1, timeout=CONNECT_TIMEOUT)
        except (OperationalError, OSError, *connection.connection_errors) as exc:
            raise BrokerUnavailableError(
                f"the broker at {redacted_url(url)} is unreachable during {operation} "
                f"({type(exc).__name__}: {exc}): start it or set DSPYQ_BROKER_URL",
                context={"broker_url": redacted_url(url), "operation": operation},
            ) from exc
        yield connection
    finally:
        connection.release()


def check_broker(app: Celery) -> None:
    """Raise :class:`~dspyq.errors.BrokerUnavailableError` unless the broker answers."""
    with _connection(app, "connecting"):
        pass


def queue_depths(app: Celery, queues: Sequence[str]) -> dict[str, int]:
    """Messages waiting in each of dspyq's ``queues`` (0 for a queue never declared)."""
    depths: dict[str, int] = {}
    with _connection(app, "reading queue depths") as connection:
        # kombu's Redis transport checks a queue's existence with an unprefixed EXISTS
        # (under a global key prefix it finds none); declaring a queue there creates
        # nothing and counts the same lists, so Redis gets a plain declare.
        passive = connection.transport.driver_type != "redis"
        for name in queues:
            physical = app.amqp.queues[name].name
            # A passive declare of a missing queue closes its channel: one channel each.
            channel = connection.channel()
            try:
                _, count, _ = channel.queue_declare(queue=physical, passive=passive)
                depths[name] = int(count)
            except connection.channel_errors:
                depths[name] = 0
            finally:
                try:
                    channel.close()
                except connection.channel_errors + connection.connection_errors:
                    pass  # closed by the broker already
    return depths

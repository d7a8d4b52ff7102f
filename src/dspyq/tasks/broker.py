"""What depends on the kind of broker: Redis or RabbitMQ (any other kombu transport).

On Redis every key the broker writes (queues, unacked deliveries, the control and event
fanouts) carries the deployment's key prefix through kombu's ``global_keyprefix``. AMQP
has no such option, so on RabbitMQ the names carry it instead: queue ``dspyq.lm.openai``
of a deployment with prefix ``acme`` is the RabbitMQ queue ``acme.lm.openai`` (with an
exchange of that name), and the control and event exchanges are ``acme.pidbox`` and
``acme.events``. The default prefix ``dspyq`` keeps the names as they are.

dspyq's code keeps using the queue names of :mod:`dspyq.tasks.protocol`: the app's
queue table (:class:`NamedQueues`) turns them into the broker's names, and remembers
the dspyq name as each queue's alias (``active_queues`` reports it).
"""

from __future__ import annotations

from typing import Any

from celery.app.amqp import AMQP, Queues
from kombu import Exchange, Queue

from dspyq.sentinel_url import celery_url
from dspyq.settings import Settings

__all__ = [
    "NamedAMQP",
    "NamedQueues",
    "broker_config",
    "broker_queue_name",
    "named_queue",
    "queue_alias",
]

PROTOCOL_PREFIX = "dspyq."
"""How every queue name of the protocol starts (``dspyq.lm.openai``, ``dspyq.optimize``)."""

QUEUE_PREFIX_KEY = "dspyq_queue_prefix"
QUEUE_ARGUMENTS_KEY = "dspyq_queue_arguments"
"""Entries of the Celery configuration read by :class:`NamedAMQP` (None: names unchanged)."""


def broker_queue_name(name: str, prefix: str | None) -> str:
    """The broker's name of dspyq queue ``name``: its leading ``dspyq`` becomes ``prefix``."""
    if not prefix or name.startswith(f"{prefix}."):
        return name
    return f"{prefix}.{name.removeprefix(PROTOCOL_PREFIX)}"


def queue_alias(declared: dict[str, Any]) -> str:
    """The dspyq name of a queue as a worker reports it (``active_queues``)."""
    return str(declared.get("alias") or declared.get("name"))


def broker_config(settings: Settings) -> dict[str, Any]:
    """The broker's part of the Celery configuration, by kind of broker."""
    prefix = settings.key_prefix
    if settings.broker_is_redis:
        return {
            # After this long without an ack, Redis hands an unacked job to another worker.
            # Every key (queues, results) lives under the deployment's prefix, so several
            # deployments or test runs can share one Redis without seeing each other.
            "broker_transport_options": {
                "visibility_timeout": settings.broker_visibility_timeout,
                "global_keyprefix": f"{prefix}:",
                # Look for jobs of dead workers every few seconds rather than every ~100 s.
                "unacked_restore_interval": max(
                    1, min(10, settings.broker_visibility_timeout // 4)
                ),
                "unacked_restore_throttle": 1,
                **celery_url(settings.broker_url)[1],
            },
            QUEUE_PREFIX_KEY: None,
            QUEUE_ARGUMENTS_KEY: None,
        }
    # RabbitMQ redelivers a dead worker's unacked jobs as soon as its connection drops.
    arguments: dict[str, Any] | None = None
    if settings.broker.quorum_queues:
        # Replicated queues; Celery sees the type and uses per-consumer QoS (quorum queues
        # have no global QoS) and its native delayed delivery for countdowns.
        arguments = {"x-queue-type": "quorum"}
        if settings.broker.delivery_limit is not None:
            arguments["x-delivery-limit"] = settings.broker.delivery_limit
    default_queue = broker_queue_name(f"{PROTOCOL_PREFIX}lm.default", prefix)
    return {
        "control_exchange": prefix,
        "event_exchange": f"{prefix}.events",
        "task_default_exchange": default_queue,
        "task_default_routing_key": default_queue,
        "worker_detect_quorum_queues": True,
        QUEUE_PREFIX_KEY: prefix,
        QUEUE_ARGUMENTS_KEY: arguments,
    }


def named_queue(name: str, prefix: str | None, arguments: dict[str, Any] | None) -> Queue:
    """The declaration of dspyq queue ``name`` under its broker name, with its own exchange."""
    physical = broker_queue_name(name, prefix)
    return Queue(
        physical,
        Exchange(physical),
        physical,
        queue_arguments=dict(arguments) if arguments else None,
        alias=name if physical != name else None,
    )


class NamedQueues(Queues):
    """Celery's queue table, declaring each queue under its broker name (see module doc)."""

    prefix: str | None = None
    arguments: dict[str, Any] | None = None

    def new_missing(self, name: str) -> Queue:
        return named_queue(name, self.prefix, self.arguments)


class NamedAMQP(AMQP):
    """The app's AMQP part, with :class:`NamedQueues` configured from the app's settings."""

    queues_cls = NamedQueues

    def Queues(self, queues: Any, *args: Any, **kwargs: Any) -> Queues:
        conf = self.app.conf
        prefix, arguments = conf.get(QUEUE_PREFIX_KEY), conf.get(QUEUE_ARGUMENTS_KEY)
        if not queues and (prefix or arguments):
            # Celery would declare its default queue by the plain name: give it ours.
            queues = [named_queue(conf.task_default_queue, prefix, arguments)]
        table = super().Queues(queues, *args, **kwargs)
        if isinstance(table, NamedQueues):
            table.prefix, table.arguments = prefix, arguments
        return table

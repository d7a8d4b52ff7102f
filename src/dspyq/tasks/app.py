"""The Celery application: JSON only, late acks, one queue per provider pool."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.utils.saferepr import saferepr

from dspyq.masking import mask
from dspyq.sentinel_url import celery_url
from dspyq.settings import Settings, get_settings
from dspyq.tasks.broker import NamedAMQP, broker_config
from dspyq.tasks.protocol import LM_QUEUE_PREFIX, OPTIMIZE_QUEUE, lm_queue

__all__ = ["LM_QUEUE_PREFIX", "OPTIMIZE_QUEUE", "celery_config", "lm_queue", "make_app"]


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings derived from dspyq's own; kept in one place for workers and clients."""
    results_url, results_options = celery_url(settings.effective_redis_url)
    return {
        "broker_url": celery_url(settings.broker_url)[0],
        "result_backend": results_url,
        # Only JSON crosses the queue: a pickled message is refused by every worker.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # A job is acknowledged only once it finished, and requeued if its worker process
        # dies, so a crash never loses a job (writes are idempotent by task id).
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # LM calls are slow and uneven: a worker takes one job per free slot, no more.
        "worker_prefetch_multiplier": 1,
        "result_backend_transport_options": {
            "visibility_timeout": settings.broker_visibility_timeout,
            "global_keyprefix": f"{settings.key_prefix}:",
            **results_options,
        },
        "result_expires": 86_400,
        "task_track_started": True,
        "task_time_limit": settings.task_time_limit,
        "task_soft_time_limit": max(1, settings.task_time_limit - 30),
        "task_default_queue": lm_queue("default"),
        "broker_connection_retry_on_startup": True,
        # Task events cost a worker ~1 ms of CPU per job (a third of a bare no-op task):
        # they are sent only while a monitor asks for them. Flower does, every few
        # seconds (its enable_events option, on by default), so its views stay complete.
        "worker_send_task_events": False,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        **broker_config(settings),
    }


class MaskedArgsAMQP(NamedAMQP):
    """Celery's message builder (with the prefixed queues of :class:`NamedAMQP`), with every task's ``argsrepr``/``kwargsrepr`` (what task
    events, Flower and worker logs show of its arguments) masked: a job's inputs named
    like secrets, or a URL with a password in them, are never shown. The message body
    itself still carries the arguments the task needs."""

    def as_task_v2(
        self,
        task_id: str,
        name: str,
        args: Any = None,
        kwargs: Any = None,
        *rest: Any,
        **options: Any,
    ) -> Any:
        if options.get("argsrepr") is None:
            options["argsrepr"] = saferepr(mask(list(args or ())), self.argsrepr_maxsize)
        if options.get("kwargsrepr") is None:
            options["kwargsrepr"] = saferepr(mask(dict(kwargs or {})), self.kwargsrepr_maxsize)
        return super().as_task_v2(task_id, name, args, kwargs, *rest, **options)


WORKER_TASK_CLASS = "dspyq.tasks.base:ContextTask"
"""The task class of a worker's app: its tasks run with the worker's context bound."""

WORKER_RESULT_RETRIES = {
    # Celery stores a task's STARTED state before its body and its result after it,
    # outside anything the task can catch: a Redis outage (or a Sentinel failover) at
    # that instant would end the delivery as an internal error, acknowledged, the job's
    # state left "running" for ever. Retried instead, with jittered backoff of up to
    # 2 s, for about five minutes; the job's message stays unacknowledged meanwhile.
    "result_backend_always_retry": True,
    "result_backend_base_sleep_between_retries_ms": 100,
    "result_backend_max_sleep_between_retries_ms": 2000,
    "result_backend_max_retries": 300,
}
"""Result-backend retries of a worker's app (a client's reads still fail fast)."""


def make_app(settings: Settings | None = None, *, task_cls: str | None = None) -> Celery:
    """Build the Celery app for the given settings (the process-wide ones by default).

    A worker passes :data:`WORKER_TASK_CLASS` as ``task_cls`` (named by its path, so a
    client's app, which only sends tasks, never imports it).
    """
    settings = settings or get_settings()
    app = Celery("dspyq", task_cls=task_cls, amqp=MaskedArgsAMQP)
    app.conf.update(celery_config(settings))
    if task_cls == WORKER_TASK_CLASS:
        app.conf.update(WORKER_RESULT_RETRIES)
    return app

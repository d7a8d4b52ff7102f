"""The bare-Celery baseline: a no-op task on an app configured exactly like dspyq's.

Run by ``bench_overhead.py`` as ``python -m celery -A noop_app worker ...`` (with
``bench/`` on ``PYTHONPATH``) under the same environment as dspyq's workers, so broker,
result backend, key prefix, acks, prefetch and events are the same.
"""

from __future__ import annotations

import time
from typing import Any

from celery import shared_task

from dspyq.settings import get_settings
from dspyq.tasks.app import make_app

NOOP_TASK = "bench.noop"
HTTP_TASK = "bench.http"
SLEEP_TASK = "bench.sleep"

app = make_app(get_settings())


@shared_task(name=NOOP_TASK, bind=True)
def noop(self: Any, request: dict[str, Any] | None = None) -> None:
    """Do nothing: what is left is Celery's own cost per job."""
    return None


_http: Any = None


@shared_task(name=HTTP_TASK, bind=True)
def http_only(self: Any, request: dict[str, Any] | None = None) -> None:
    """One raw chat-completion POST to the provider's api_base, nothing else.

    Separates what the fake LM server itself costs from what dspyq adds around the call.
    """
    global _http
    import httpx

    if _http is None:
        _http = httpx.Client(timeout=30.0)
    base = get_settings().provider("openai").api_base
    body = {"model": "bench", "messages": [{"role": "user", "content": "[[ ## answer ## ]]"}]}
    _http.post(f"{base}/chat/completions", json=body).raise_for_status()


@shared_task(name=SLEEP_TASK, bind=True)
def sleep(self: Any, seconds: float, request: dict[str, Any] | None = None) -> None:
    """Wait like an LM call would, doing nothing else: Celery's ceiling at that latency."""
    time.sleep(seconds)

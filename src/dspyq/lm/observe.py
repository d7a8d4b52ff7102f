"""What an LM call reports: one ``lm_request`` event per call, answered or failed.

The event carries what dashboards and cost reports need (provider, model, tokens, cost,
latency, cache hit, outcome) and a short hash of the prompt to group identical calls;
never the messages themselves (their size) and never a key or a header.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from dspyq.core import observe
from dspyq.lm.request import Usage

__all__ = ["LM_REQUEST", "STATUS_OK", "prompt_hash", "report_lm_request"]

LM_REQUEST = "lm_request"
STATUS_OK = "ok"
_ERROR_CHARS = 500


def prompt_hash(messages: list[dict[str, Any]]) -> str:
    """The first 16 hex digits of the sha256 of the messages' canonical JSON."""
    text = json.dumps(messages, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def report_lm_request(
    *,
    request_id: str,
    provider: str,
    model: str,
    messages: list[dict[str, Any]],
    usage: Usage,
    cost_usd: float,
    duration_ms: float,
    cache_hit: bool,
    stream: bool = False,
    error: BaseException | None = None,
) -> None:
    """Emit the ``lm_request`` event of one call; ``status`` is "ok" or the error's type name."""
    if not observe.has_sinks():
        return
    data: dict[str, Any] = {
        "request_id": request_id,
        "provider": provider,
        "model": model,
        "input_tokens": usage.prompt_tokens,
        "output_tokens": usage.completion_tokens,
        "cost_usd": cost_usd,
        "duration_ms": duration_ms,
        "cache_hit": cache_hit,
        "stream": stream,
        "status": STATUS_OK if error is None else type(error).__name__,
        "prompt_hash": prompt_hash(messages),
    }
    if error is not None:
        data["error"] = str(error)[:_ERROR_CHARS]
        code = getattr(error, "code", None)
        if isinstance(code, int):
            data["error_code"] = code
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            data["retry_after"] = float(retry_after)
    observe.emit(LM_REQUEST, data)

"""Map HTTP outcomes to :mod:`dspyq.errors` at the provider boundary.

Every error built here names the provider, model, status and URL in its context, and
has the API key scrubbed from any text the server echoed back.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from dspyq.errors import (
    AuthenticationError,
    BadRequestError,
    ContextWindowExceededError,
    MalformedResponseError,
    ProviderError,
    ProviderServerError,
    ProviderTimeoutError,
    ProviderUnreachableError,
    QuotaExceededError,
    RateLimitedError,
    UnknownModelError,
)
from dspyq.lm.providers.base import ProviderConfig
from dspyq.lm.providers.limits import note_budget, read_rate_limits
from dspyq.resilience.retry import parse_retry_after

_MAX_DETAIL = 500

# Phrases servers use when the prompt is too long (OpenAI and compatible servers such
# as vLLM or llama.cpp, and Anthropic).
_CONTEXT_PHRASES = (
    "context_length_exceeded",
    "maximum context length",
    "context length",
    "context window",
    "prompt is too long",
    "too many tokens",
)

# Billing errors: a spent quota (OpenAI's 429 ``insufficient_quota``) or credit
# (Anthropic's 400 "credit balance is too low", or a 402 ``billing_error``).
_QUOTA_CODES = frozenset({"insufficient_quota", "billing_error", "billing_hard_limit_reached"})
_QUOTA_PHRASES = ("credit balance is too low", "exceeded your current quota")


def redact(text: str, config: ProviderConfig) -> str:
    """``text`` with the provider's API key (if any) replaced by ``***``."""
    key = config.key_value()
    if key:
        text = text.replace(key, "***")
    return text


def _error_detail(body: Any) -> tuple[str, str | None]:
    """The server's own message and error code/type, from OpenAI or Anthropic error JSON."""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            message = str(err.get("message") or "")
            code = err.get("code") or err.get("type")
            return message, str(code) if code is not None else None
        if isinstance(err, str):
            return err, None
        if "message" in body:
            return str(body["message"]), None
        if "detail" in body:
            return str(body["detail"]), None
    return "", None


def _retry_after_from(headers: httpx.Headers) -> float | None:
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    return parse_retry_after(headers.get("retry-after"))


def _context(config: ProviderConfig, model: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"provider": config.name, "model": model, "url": url, **extra}


def _is_quota(status: int, code: str | None, body: Any, message: str) -> bool:
    if status == 402:  # Payment Required: billing, whatever the body says
        return True
    if status not in (400, 402, 403, 429):
        return False
    err = body.get("error") if isinstance(body, dict) else None
    kind = err.get("type") if isinstance(err, dict) else None
    lowered = message.lower()
    return (
        code in _QUOTA_CODES
        or kind in _QUOTA_CODES
        or any(phrase in lowered for phrase in _QUOTA_PHRASES)
    )


def error_from_response(
    response: httpx.Response, body_text: str, config: ProviderConfig, model: str
) -> ProviderError:
    """The dspyq error for a non-2xx response.

    Its rate-limit headers are read too: a spent budget is noted for the provider's
    next call and kept in the error's context (``rate_limit``); a 429 without a
    Retry-After waits for the spent budget's reset instead.
    """
    status = response.status_code
    url = str(response.request.url)
    try:
        body: Any = json.loads(body_text) if body_text else None
    except ValueError:
        body = None
    message, code = _error_detail(body)
    detail = redact(message or body_text, config).strip()[:_MAX_DETAIL]
    context = _context(config, model, url, status=status)
    if code is not None:
        context["error_code"] = code
    limits = read_rate_limits(response.headers)
    note_budget(config, limits)
    if not limits.empty:
        context["rate_limit"] = limits.as_dict()
    text = f"{config.name} answered HTTP {status} for model {model!r}"
    if detail:
        text += f": {detail}"
    if _is_quota(status, code, body, message):
        return QuotaExceededError(
            text + " (the account's quota or credit is spent; retrying will not help)",
            context=context,
        )
    retry_after = _retry_after_from(response.headers)
    if retry_after is None and status == 429 and limits.wait() > 0:
        retry_after = limits.wait()
    if status == 429:
        return RateLimitedError(text, context=context, retry_after=retry_after)
    if status == 408:
        return ProviderTimeoutError(text, context=context, retry_after=retry_after)
    if status >= 500:
        return ProviderServerError(text, context=context, retry_after=retry_after)
    if status in (401, 403):
        return AuthenticationError(
            text + " (check the provider's api_key setting)", context=context
        )
    if 400 <= status < 500:
        haystack = f"{code or ''} {message}".lower()
        if any(phrase in haystack for phrase in _CONTEXT_PHRASES):
            return ContextWindowExceededError(text, context=context)
        if status == 404:
            return UnknownModelError(text, context=context)
        return BadRequestError(text, context=context)
    return MalformedResponseError(text, context=context)


def error_from_transport(
    exc: httpx.HTTPError, config: ProviderConfig, model: str, url: str
) -> ProviderError:
    """The dspyq error for a request that got no usable HTTP answer."""
    context = _context(config, model, url, status=None, cause=type(exc).__name__)
    if isinstance(exc, httpx.TimeoutException):
        return ProviderUnreachableError(
            f"{config.name} did not answer in time for model {model!r} ({type(exc).__name__})",
            context=context,
        )
    if isinstance(exc, httpx.DecodingError):
        return MalformedResponseError(
            f"{config.name} sent a body that could not be decoded for model {model!r}",
            context=context,
        )
    detail = redact(str(exc), config)[:_MAX_DETAIL]
    return ProviderUnreachableError(
        f"could not reach {config.name} at {url} for model {model!r}: {detail or type(exc).__name__}",
        context=context,
    )


def malformed(
    reason: str, config: ProviderConfig, model: str, url: str, status: int | None, body: str = ""
) -> MalformedResponseError:
    """A 2xx answer that does not follow the protocol."""
    context = _context(config, model, url, status=status)
    if body:
        context["body"] = redact(body, config)[:_MAX_DETAIL]
    return MalformedResponseError(
        f"{config.name} sent a malformed answer for model {model!r}: {reason}", context=context
    )

"""One exception hierarchy for dspyq, rooted at :class:`DspyqError`.

Every error carries a stable ``code`` (ranges by kind, as in the seed's Foundation
error), a ``category``, a ``severity``, a ``retry_strategy``, the ``correlation_id``
of the job it happened in and a ``context`` dict. Foreign exceptions (httpx,
pydantic, redis, SQLAlchemy) are mapped to these at the boundary where they occur.

Code ranges: 1xxx config, 2xxx system, 3xxx data (signatures, inputs, parsing),
4xxx external/provider, 5xxx circuit breaker, 6xxx rate limiter.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar, Literal

from dspyq import lm_errors as lm
from dspyq.masking import mask, mask_text

RetryStrategy = Literal["none", "immediate", "backoff", "after"]
Severity = Literal["low", "medium", "high", "critical"]


def new_correlation_id() -> str:
    """A fresh correlation id, as used on jobs, events and errors."""
    return uuid.uuid4().hex


class DspyqError(Exception):
    """Base of every error dspyq raises."""

    code: ClassVar[int] = 2000
    category: ClassVar[str] = "system"
    severity: ClassVar[Severity] = "medium"
    default_retry: ClassVar[RetryStrategy] = "none"

    def __init__(
        self,
        message: str,
        *,
        correlation_id: str | None = None,
        context: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        # What an error says is logged, stored and shown: never with a secret in it.
        message = mask_text(message)
        if isinstance(self, lm.DSPyError):
            # dspyq's message and integer code stay; DSPy's fields come from the context.
            Exception.__init__(self, message)
        else:
            super().__init__(message)
        self.message = message
        self.correlation_id = correlation_id or new_correlation_id()
        self.context: dict[str, Any] = mask(dict(context or {}))
        self.retry_after = retry_after
        if isinstance(self, lm.DSPyError):
            lm.fields_from_context(self, self.context)

    @property
    def retry_strategy(self) -> RetryStrategy:
        return "after" if self.retry_after is not None else self.default_retry

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as stored in SQL and sent back across the queue."""
        return {
            "type": type(self).__name__,
            "code": self.code,
            "category": self.category,
            "severity": self.severity,
            "message": self.message,
            "context": self.context,
            "correlation_id": self.correlation_id,
            "retry_strategy": self.retry_strategy,
            "retry_after": self.retry_after,
            **lm.kind_of(self),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DspyqError:
        """Rebuild an error from :meth:`to_dict` output (unknown types become DspyqError)."""
        error_cls = ERROR_TYPES.get(str(data.get("type")), DspyqError)
        error_cls = lm.variant_of(error_cls, data.get("lm_error"))
        error = error_cls.__new__(error_cls)
        DspyqError.__init__(
            error,
            str(data.get("message", "")),
            correlation_id=data.get("correlation_id"),
            context=data.get("context") or {},
            retry_after=data.get("retry_after"),
        )
        return error

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross thread pools and process boundaries; keep their fields.
        return (DspyqError.from_dict, (self.to_dict(),))


# --- configuration (1xxx) -------------------------------------------------------


class ConfigurationError(DspyqError):
    """Settings are missing or invalid (no LM configured, bad URL, bad rate)."""

    code = 1001
    category = "config"
    severity = "high"


class NoLMConfiguredError(ConfigurationError, ValueError):
    """A predictor was called with no LM set or configured, or with a model string where
    an LM object belongs. DSPy raises ``ValueError`` for both, so this is one too:
    ``except ValueError`` ports unchanged."""


# --- system (2xxx) ---------------------------------------------------------------


class StateError(DspyqError):
    """A saved program state cannot be read or does not fit the program."""

    code = 2001


class StatePathError(StateError, ValueError):
    """A state path DSPy refuses too (a suffix other than .json or .pkl): a ValueError
    as well, with DSPy's message, so ``except ValueError`` code ports unchanged."""


class StateNotFoundError(StateError, FileNotFoundError):
    """No file at a state path: a FileNotFoundError as well, as DSPy raises."""


class ToolError(DspyqError):
    """A ReAct tool raised or could not be called."""

    code = 2002


class JobTimeoutError(DspyqError):
    """A job did not finish within the time its caller was willing to wait."""

    code = 2003
    default_retry = "after"


class JobCancelledError(DspyqError):
    """The job was cancelled before it ran."""

    code = 2004


class DeploymentError(DspyqError):
    """A step of the deployment pipeline failed; the alias was left where it was.

    ``context`` names the ``step`` and the ``deployment_id`` (its correlation id)."""

    code = 2005


class StoreError(DspyqError):
    """The SQL store refused an operation (bad data, missing schema, constraint)."""

    code = 2100


class StoreUnavailableError(StoreError):
    """The SQL store cannot be reached or stayed locked too long; retrying may succeed."""

    code = 2101
    default_retry = "backoff"


class RedisOperationError(DspyqError):
    """Redis refused an operation of the rate limiter, breaker or cache (a bug or a clash of keys)."""

    code = 2200


class RedisUnavailableError(RedisOperationError):
    """Redis cannot be reached, timed out, or is loading or read-only; retrying may succeed."""

    code = 2201
    default_retry = "backoff"


class BrokerUnavailableError(DspyqError):
    """The broker (Redis or RabbitMQ) cannot be reached; retrying may succeed."""

    code = 2300
    default_retry = "backoff"


# --- data (3xxx) -----------------------------------------------------------------


class SignatureError(DspyqError):
    """A signature string or class is malformed."""

    code = 3001
    category = "data"


class InputError(DspyqError):
    """Inputs given to a module do not match its signature."""

    code = 3002
    category = "data"


class AdapterParseError(DspyqError):
    """An LM completion could not be parsed into the signature's output fields."""

    code = 3003
    category = "data"

    def __init__(
        self,
        message: str,
        *,
        adapter_name: str = "",
        signature: Any = None,
        lm_response: str | None = None,
        parsed_result: dict[str, Any] | None = None,
        correlation_id: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> None:
        ctx = dict(context or {})
        ctx.setdefault("adapter", adapter_name)
        if lm_response is not None:
            ctx.setdefault("lm_response", lm_response[:2000])
        super().__init__(message, correlation_id=correlation_id, context=ctx)
        self.adapter_name = adapter_name
        self.signature = signature
        self.lm_response = lm_response
        self.parsed_result = parsed_result


# --- external / provider (4xxx) ---------------------------------------------------


class ProviderError(DspyqError, lm.LMError):
    """An LM provider call failed (a DSPy ``LMError``; the kinds below narrow it as DSPy does)."""

    code = 4000
    category = "external"


class RateLimitedError(ProviderError, lm.LMRateLimitError):
    """The provider answered 429; ``retry_after`` holds its Retry-After, if any."""

    code = 4029
    default_retry = "backoff"


class ProviderUnavailableError(ProviderError):
    """The provider is down, timed out or answered 5xx."""

    code = 4503
    default_retry = "backoff"


class BadRequestError(ProviderError, lm.LMInvalidRequestError):
    """The provider refused the request as malformed (4xx other than the ones below)."""

    code = 4400


class AuthenticationError(ProviderError, lm.LMAuthError):
    """The provider refused the API key (401/403)."""

    code = 4401
    severity = "high"


class QuotaExceededError(ProviderError, lm.LMBillingError):
    """The account's quota or credit is spent (OpenAI's ``insufficient_quota`` 429,
    Anthropic's low credit balance): no wait cures it, so it is never retried."""

    code = 4402
    severity = "high"

    @property
    def retry_strategy(self) -> RetryStrategy:
        return "none"


class ContextWindowExceededError(BadRequestError, lm.ContextWindowExceededError):
    """The prompt does not fit the model's context window (also raised as DSPy's is:
    ``ContextWindowExceededError(model=...)``, as custom LMs do to make ReAct shorten)."""

    code = 4413

    def __init__(
        self,
        message: str = "Context window exceeded",
        *,
        model: str | None = None,
        correlation_id: str | None = None,
        context: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        ctx = dict(context or {})
        if model is not None:
            ctx.setdefault("model", model)
        super().__init__(
            message, correlation_id=correlation_id, context=ctx, retry_after=retry_after
        )


class MalformedResponseError(ProviderError, lm.LMProviderError):
    """The provider answered with something that is not its protocol."""

    code = 4502
    default_retry = "backoff"


@lm.named_as(ProviderUnavailableError)
class ProviderServerError(ProviderUnavailableError, lm.LMServerError):
    """The provider answered 5xx."""


@lm.named_as(ProviderUnavailableError)
class ProviderTimeoutError(ProviderUnavailableError, lm.LMTimeoutError):
    """The provider answered 408 (DSPy's ``LMTimeoutError``)."""


@lm.named_as(ProviderUnavailableError)
class ProviderUnreachableError(ProviderUnavailableError, lm.LMTransportError):
    """No answer came: refused, reset, or no byte in time (DSPy's ``LMTransportError``)."""


@lm.named_as(BadRequestError)
class UnknownModelError(BadRequestError, lm.LMUnsupportedModelError):
    """The provider answered 404: it does not serve the model."""


class PrivacyViolationError(DspyqError):
    """A completion gave away what the privacy level protects: personal data redacted
    from the job's inputs, or a secret-shaped value. ``context["kinds"]`` says which
    kinds (never the values)."""

    code = 3301
    category = "data"
    severity = "high"


# --- circuit breaker (5xxx) and rate limiter (6xxx) -------------------------------


class CircuitOpenError(DspyqError):
    """The provider's circuit breaker is open: the call failed fast."""

    code = 5001
    category = "circuit_breaker"
    default_retry = "after"


class RateLimitExceededError(DspyqError):
    """dspyq's own rate limiter refused the call (the pool's budget is spent)."""

    code = 6001
    category = "rate_limiter"
    default_retry = "after"


ERROR_TYPES: dict[str, type[DspyqError]] = {
    cls.__name__: cls
    for cls in (
        DspyqError,
        ConfigurationError,
        NoLMConfiguredError,
        StateError,
        StatePathError,
        StateNotFoundError,
        ToolError,
        JobTimeoutError,
        JobCancelledError,
        DeploymentError,
        StoreError,
        StoreUnavailableError,
        RedisOperationError,
        RedisUnavailableError,
        BrokerUnavailableError,
        SignatureError,
        InputError,
        AdapterParseError,
        ProviderError,
        RateLimitedError,
        ProviderUnavailableError,
        BadRequestError,
        AuthenticationError,
        QuotaExceededError,
        ContextWindowExceededError,
        MalformedResponseError,
        CircuitOpenError,
        RateLimitExceededError,
        PrivacyViolationError,
    )
}

"""DSPy's LM error family, by DSPy's names and with DSPy's hierarchy and fields.

Code written against DSPy catches these (``except dspy.LMRateLimitError``); dspyq's
own provider errors (:mod:`dspyq.errors`) are instances of the matching class here
too, so the same ``except`` clauses catch the same failures after a rename.

Every error carries DSPy's structured fields: ``code`` (a short name such as
``"rate_limit"``), ``model``, ``provider``, ``provider_code``, ``status``,
``request_id`` and ``retry_after``. A dspyq error keeps its own integer ``code``.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

T = TypeVar("T")


class DSPyError(Exception):
    """Root of DSPy's errors with structured metadata; ``str()`` starts with ``[model]``."""

    default_code: str | None = None
    code: ClassVar[Any] = None  # set per error; a dspyq error keeps its class's int

    def __init__(
        self,
        message: str = "",
        *,
        code: str | None = None,
        model: str | None = None,
        provider: str | None = None,
        provider_code: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        self.code = code or self.default_code  # type: ignore[misc]
        self.model = model
        self.provider = provider
        self.provider_code = provider_code
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after
        shown = f"[{model}] {message}" if model else message
        super().__init__(shown.rstrip() if not message else shown)


class LMError(DSPyError):
    """Any failure at the LM boundary."""

    default_code = "lm_error"


class LMTransportError(LMError):
    """No answer came back: connection refused or reset, DNS, TLS, a read timeout."""

    default_code = "transport"


class LMLockTimeoutError(LMError):
    """A local credential lock stayed taken too long."""

    default_code = "lock_timeout"

    def __init__(self, message: str = "", *, path: str = "", lock_path: str = "", **kwargs: Any):
        self.path = path
        self.lock_path = lock_path
        super().__init__(message, **kwargs)


class LMCollectionLimitError(LMError):
    """A local collector spent its budget; ``source`` is the failure that said so."""

    default_code = "collection_limit"

    def __init__(self, message: str = "", *, source: Any = None, **kwargs: Any):
        self._source = source
        self.limit = getattr(source, "limit", None)
        self.maximum = getattr(source, "maximum", None)
        self.retained_bytes = getattr(source, "retained_bytes", 0)
        self.retained_events = getattr(source, "retained_events", 0)
        self.partial_events = getattr(source, "partial_events", ())
        self.rejected_event = getattr(source, "rejected_event", None)
        super().__init__(message, **kwargs)

    @property
    def partial(self) -> Any:
        return None if self._source is None else self._source.partial


class LMConfigurationError(LMError):
    """The LM or its provider client is set up wrongly."""

    default_code = "configuration"


class LMNotConfiguredError(LMConfigurationError):
    """A setting or credential the LM needs is missing."""

    default_code = "not_configured"


class LMUnsupportedFeatureError(LMError):
    """The model or provider lacks a requested feature (``feature``/``features``, ``issues``)."""

    default_code = "unsupported_feature"

    def __init__(
        self,
        message: str = "",
        *,
        features: list[str] | None = None,
        feature: str | None = None,
        issues: list[str] | None = None,
        **kwargs: Any,
    ):
        self.feature = feature
        if features is not None:
            self.features = list(features)
        else:
            self.features = [] if feature is None else [feature]
        self.issues = list(issues or [])
        super().__init__(message, **kwargs)


class LMProviderError(LMError):
    """The provider answered with an error (or with something that is not its protocol)."""

    default_code = "provider"


class LMUnexpectedError(LMError):
    """An unclassified failure at the LM boundary."""

    default_code = "unexpected"


class LMStreamAssemblyError(LMUnexpectedError):
    """A stream ended incomplete or invalid; ``partial`` holds what could be saved."""

    default_code = "stream_assembly"

    def __init__(
        self,
        message: str = "",
        *,
        partial: Any = None,
        part_index: int | None = None,
        **kwargs: Any,
    ):
        self.partial = partial
        self.part_index = part_index
        super().__init__(message, **kwargs)


class LMAuthError(LMProviderError):
    """The provider refused the credentials (401/403)."""

    default_code = "auth"


class LMBillingError(LMProviderError):
    """The account's quota or credit is spent (402, OpenAI's ``insufficient_quota``)."""

    default_code = "billing"


class LMRateLimitError(LMProviderError):
    """The provider rate-limited the call; ``retry_after`` holds its hint, if any."""

    default_code = "rate_limit"


class LMInvalidRequestError(LMProviderError):
    """The provider refused the request's shape or resource."""

    default_code = "invalid_request"


class ContextWindowExceededError(LMInvalidRequestError):
    """The prompt does not fit the model's context window."""

    default_code = "context_window_exceeded"

    def __init__(
        self, *, model: str | None = None, message: str = "Context window exceeded", **kwargs: Any
    ):
        super().__init__(message, model=model, **kwargs)


class LMUnsupportedModelError(LMInvalidRequestError):
    """The provider does not know or serve the requested model (404)."""

    default_code = "unsupported_model"


class LMTimeoutError(LMProviderError):
    """The provider itself answered that the request timed out (408)."""

    default_code = "timeout"


class LMServerError(LMProviderError):
    """The provider failed while handling the request (5xx)."""

    default_code = "server"


# Transient by kind: waiting (and honouring retry_after) may cure them.
_RETRYABLE = (LMRateLimitError, LMTimeoutError, LMServerError, LMTransportError, LMLockTimeoutError)


def is_retryable_lm_error(error: BaseException) -> bool:
    """Whether ``error`` is an LM failure that is generally safe to retry."""
    return isinstance(error, _RETRYABLE)


def _kind(cls: type[Any]) -> str | None:
    return next((base.__name__ for base in cls.__mro__ if base.__module__ == __name__), None)


def kind_of(error: BaseException) -> dict[str, str]:
    """``{"lm_error": <DSPy class name>}`` for an LM error (how the queue keeps its kind)."""
    kind = _kind(type(error))
    return {} if kind is None else {"lm_error": kind}


def variant_of(cls: type[T], kind: Any) -> type[T]:
    """The variant of ``cls`` (see :func:`named_as`) whose DSPy kind is ``kind``, else ``cls``."""
    variants = (sub for sub in cls.__subclasses__() if sub.__name__ == cls.__name__)
    return next((sub for sub in variants if _kind(sub) == kind), cls)


def named_as(parent: type[Any]) -> Any:
    """A DSPy-kind variant of a dspyq error keeps its parent's name, so what dspyq records
    and reports (error types, reasons, request statuses) stays as it was."""

    def rename(cls: type[Any]) -> type[Any]:
        cls.__name__ = parent.__name__
        cls.__qualname__ = parent.__qualname__
        return cls

    return rename


def fields_from_context(error: DSPyError, context: dict[str, Any]) -> None:
    """DSPy's fields of a dspyq provider error, from what its context says."""
    limits = context.get("rate_limit")
    error.model = context.get("model")
    error.provider = context.get("provider")
    error.provider_code = context.get("error_code")
    error.status = context.get("status")
    error.request_id = limits.get("request_id") if isinstance(limits, dict) else None


__all__ = [
    "ContextWindowExceededError",
    "DSPyError",
    "LMAuthError",
    "LMBillingError",
    "LMCollectionLimitError",
    "LMConfigurationError",
    "LMError",
    "LMInvalidRequestError",
    "LMLockTimeoutError",
    "LMNotConfiguredError",
    "LMProviderError",
    "LMRateLimitError",
    "LMServerError",
    "LMStreamAssemblyError",
    "LMTimeoutError",
    "LMTransportError",
    "LMUnexpectedError",
    "LMUnsupportedFeatureError",
    "LMUnsupportedModelError",
    "is_retryable_lm_error",
]

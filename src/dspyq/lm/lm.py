"""The LM facade: one object per model, called like DSPy's ``dspy.LM``.

``LM("openai/gpt-4o-mini")`` picks the provider from the model prefix and the
provider settings, and every call goes cache -> provider (with retries; each attempt
through the process's provider gate, see :mod:`dspyq.lm.gate`) -> history, and is
reported as an ``lm_request`` event (:mod:`dspyq.lm.observe`).
Keys come from the arguments or the settings, are held as ``SecretStr``, and never
reach the history, ``dump_state`` or error messages.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import httpx
from pydantic import SecretStr

from dspyq.core.context import current, setting
from dspyq.errors import ConfigurationError
from dspyq.lm import history as global_history
from dspyq.lm.cache import default_cache
from dspyq.lm.cache_peek import CachePeek
from dspyq.lm.call import PreparedCall, StreamedResponse, prepare_call
from dspyq.lm.degrade import stale_answer
from dspyq.lm.gate import PeekingGate, estimate_tokens, provider_gate
from dspyq.lm.layered_cache import LayeredCache
from dspyq.lm.observe import report_lm_request
from dspyq.lm.pricing import Price, PriceTable, price_table
from dspyq.lm.privacy import REDACT_MESSAGES_KEY
from dspyq.lm.providers import HTTPProvider, ProviderConfig, provider_class
from dspyq.lm.request import LMChunk, LMResponse, Usage
from dspyq.lm.truncation import warn_if_truncated
from dspyq.resilience.retry import RetryPolicy
from dspyq.settings import get_settings, split_model

logger = logging.getLogger("dspyq.lm")

T = TypeVar("T")

# Conventional variables read when neither the argument nor the settings hold a key.
_STANDARD_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}

# Keys of DSPy's saved LM form that describe DSPy internals, not our LM's options.
_DSPY_STATE_ONLY = frozenset(
    {"_dspy_lm_class", "engine", "model_type", "finetuning_model", "launch_kwargs", "train_kwargs"}
)
_UNSAFE_STATE = frozenset({"api_base", "base_url", "api_key", "model_list"})

_unpriced_noted: set[str] = set()
_unpriced_lock = threading.Lock()


class LM:
    """A language model behind an HTTP provider; see the module docstring.

    ``temperature``, ``max_tokens`` and any extra ``kwargs`` are default request
    options (``lm.kwargs``) that each call may override. ``http_client`` /
    ``async_http_client`` are the seam for tests and connection tuning;
    ``retry_policy`` sets the backoff shape (``num_retries`` still counts);
    ``prices`` overrides the price table for this LM (a :class:`Price`, a
    ``(input, output)`` pair for this model, or a mapping of model -> price).
    """

    def __init__(
        self,
        model: str,
        api_base: str | None = None,
        api_key: str | SecretStr | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        num_retries: int | None = None,
        cache: bool = True,
        timeout: float | None = None,
        http_client: httpx.Client | None = None,
        prices: Any = None,
        *,
        async_http_client: httpx.AsyncClient | None = None,
        retry_policy: RetryPolicy | None = None,
        model_type: str = "chat",
        **kwargs: Any,
    ) -> None:
        if model_type != "chat":
            raise ConfigurationError(
                f"model_type {model_type!r} is not supported; dspyq LMs are chat models",
                context={"model": model},
            )
        settings = get_settings()
        provider_name, model_name = split_model(model)
        provider_settings = settings.provider(provider_name)
        cls = provider_class(provider_settings.kind)
        base = api_base or provider_settings.api_base
        if not base:
            raise ConfigurationError(
                f"no api_base for provider {provider_name!r}: pass api_base= or set "
                f"DSPYQ_PROVIDERS__{provider_name.upper()}__API_BASE",
                context={"provider": provider_name, "model": model},
            )
        self._init_args: dict[str, Any] = {
            "model": model,
            "api_base": api_base,
            "api_key": api_key,
            "num_retries": num_retries,
            "cache": cache,
            "timeout": timeout,
            "http_client": http_client,
            "prices": prices,
            "async_http_client": async_http_client,
            "retry_policy": retry_policy,
        }
        config = ProviderConfig(
            name=provider_name,
            kind=provider_settings.kind,
            api_base=base,
            api_key=self._resolve_key(api_key, provider_settings.api_key, provider_name),
            timeout=float(timeout if timeout is not None else provider_settings.timeout),
        )
        self.provider: HTTPProvider = cls(config, http_client, async_http_client)
        self.model = model
        self.model_name = model_name
        self.provider_name = provider_name
        self.model_type = model_type
        self.cache = cache
        self.num_retries = int(
            num_retries if num_retries is not None else provider_settings.num_retries
        )
        self.kwargs: dict[str, Any] = {
            "temperature": temperature,
            "max_tokens": max_tokens,
            **kwargs,
        }
        self.history: list[dict[str, Any]] = []
        self._retry_template = retry_policy or RetryPolicy()
        self._prices = self._price_table(prices)
        self._history_lock = threading.Lock()

    # --- construction helpers ---------------------------------------------------------

    @staticmethod
    def _resolve_key(
        given: str | SecretStr | None, configured: SecretStr | None, provider_name: str
    ) -> SecretStr | None:
        if isinstance(given, SecretStr):
            return given
        if given:
            return SecretStr(given)
        if configured is not None and configured.get_secret_value():
            return configured
        env_name = _STANDARD_KEY_ENV.get(provider_name)
        value = os.environ.get(env_name) if env_name else None
        return SecretStr(value) if value else None

    def _price_table(self, prices: Any) -> PriceTable:
        if prices is None:
            return price_table()
        per_model = isinstance(prices, Mapping) and not (
            {"input", "output", "input_per_million", "output_per_million"} & set(prices)
        )
        if per_model:
            return PriceTable(prices, fallback=price_table())
        return PriceTable({self.model: Price.coerce(prices)}, fallback=price_table())

    @property
    def supports_response_schema(self) -> bool:
        """Whether ``response_format`` may be a pydantic model (JSON schema mode)."""
        return bool(self.provider.supports_response_schema)

    def __repr__(self) -> str:
        return f"LM(model={self.model!r})"

    # --- preparing a call ---------------------------------------------------------------

    def _prepare(self, prompt: str | None, messages: Any, kwargs: dict[str, Any]) -> PreparedCall:
        call = prepare_call(
            model=self.model,
            model_name=self.model_name,
            defaults=self.kwargs,
            cache=self.cache,
            num_retries=self.num_retries,
            retry_template=self._retry_template,
            prompt=prompt,
            messages=messages,
            kwargs=kwargs,
        )
        settings = get_settings()
        if not settings.cache.enabled:  # the settings switch beats any per-call wish
            call.key = None
        provider = settings.providers.get(self.provider_name)
        if (provider is not None and provider.redact) or setting(REDACT_MESSAGES_KEY):
            call.redact()
        # An attempt that failed and is retried is recorded as an lm_request of its own,
        # with its cause, so a 5xx burst or a 429 storm shows in the trace even when the
        # call succeeds in the end.
        given = call.policy.on_retry

        def record_retried(error: Exception, attempt: int, wait: float) -> None:
            self._record_failure(call, time.perf_counter(), error)
            if given is not None:
                given(error, attempt, wait)  # type: ignore[arg-type]

        call.policy = dataclasses.replace(call.policy, on_retry=record_retried)
        return call

    @staticmethod
    def _cached(call: PreparedCall) -> LMResponse | None:
        return default_cache().get(call.key) if call.key is not None else None

    @staticmethod
    def _cached_or_peek(call: PreparedCall) -> tuple[LMResponse | None, CachePeek | None]:
        """As :meth:`_cached`, but a shared layer's read may be left to the gate, to make
        in its own Redis round trip (see :mod:`dspyq.lm.cache_peek`)."""
        if call.key is None:
            return None, None
        cache = default_cache()
        can_peek = getattr(provider_gate(), "can_peek", None)
        if can_peek is not None and isinstance(cache, LayeredCache):
            return cache.get_or_peek(call.key, can_peek)
        return cache.get(call.key), None

    # --- recording ------------------------------------------------------------------------

    def _cost(self, response: LMResponse) -> tuple[float, bool]:
        price = self._prices.lookup(self.model)
        if price is None:
            with _unpriced_lock:
                first = self.model not in _unpriced_noted
                _unpriced_noted.add(self.model)
            if first:
                logger.info("no price known for %s; its calls are counted at $0", self.model)
            return 0.0, False
        return price.cost(response.usage), True

    def _record(
        self,
        call: PreparedCall,
        response: LMResponse,
        started: float,
        *,
        cache_hit: bool,
        stream: bool = False,
        stale: bool = False,
    ) -> None:
        if cache_hit:
            usage, cost, priced = Usage(), 0.0, True
        else:
            usage = response.usage
            cost, priced = self._cost(response)
            warn_if_truncated(response, call.request.params)
            if call.key is not None:
                default_cache().put(call.key, response)
        entry: dict[str, Any] = {
            "prompt": call.prompt,
            "messages": call.request.messages,
            "kwargs": call.history_kwargs,
            "outputs": list(response.outputs),
            "usage": usage.model_dump(),
            "cost": cost,
            "cost_known": priced,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            "cache_hit": cache_hit,
            "stream": stream,
            "stale": stale,
            "model": self.model,
            "response_model": response.model,
            "provider": self.provider_name,
            "model_type": self.model_type,
            "finish_reasons": list(response.finish_reasons),
            "rate_limit": None if cache_hit else response.rate_limit,
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "uuid": uuid.uuid4().hex,
        }
        with self._history_lock:
            self.history.append(entry)
            overflow = len(self.history) - global_history.MAX_HISTORY
            if overflow > 0:
                del self.history[:overflow]
        global_history.record(entry)
        report_lm_request(
            request_id=entry["uuid"],
            provider=self.provider_name,
            model=self.model,
            messages=call.request.messages,
            usage=usage,
            cost_usd=cost,
            duration_ms=entry["duration_ms"],
            cache_hit=cache_hit,
            stream=stream,
        )

    def _stale(self, call: PreparedCall, error: Exception) -> LMResponse | None:
        """The last resort when the provider is unavailable (see :mod:`dspyq.lm.degrade`)."""
        return stale_answer(
            default_cache(), call.key, error, provider=self.provider_name, model=self.model
        )

    def _record_failure(
        self, call: PreparedCall, started: float, error: Exception, *, stream: bool = False
    ) -> None:
        report_lm_request(
            request_id=uuid.uuid4().hex,
            provider=self.provider_name,
            model=self.model,
            messages=call.request.messages,
            usage=Usage(),
            cost_usd=0.0,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            cache_hit=False,
            stream=stream,
            error=error,
        )

    # --- one provider attempt, through the gate (rate limiter, circuit breaker) -------------

    def _gated(self, call: PreparedCall, send: Callable[[], T], peek: CachePeek | None = None) -> T:
        if peek is None:
            call.report_redaction(self.provider_name, self.model)
            return provider_gate().run(self.provider_name, estimate_tokens(call.request), send)

        def sending() -> T:  # the request leaves only if the cache did not answer
            call.report_redaction(self.provider_name, self.model)
            return send()

        gate = cast(PeekingGate, provider_gate())
        return gate.run(self.provider_name, estimate_tokens(call.request), sending, peek)

    async def _agated(self, call: PreparedCall, send: Callable[[], Awaitable[T]]) -> T:
        call.report_redaction(self.provider_name, self.model)
        return await provider_gate().arun(self.provider_name, estimate_tokens(call.request), send)

    def _open_stream(self, call: PreparedCall) -> Iterator[LMChunk]:
        # The gate sees the stream open: the request goes out and its first chunk comes
        # back inside it, so the limiter counts it and the breaker judges the answer.
        chunks = self.provider.stream(call.request)
        first = self._gated(call, lambda: next(chunks, None))
        if first is not None:
            yield first
            yield from chunks

    async def _aopen_stream(self, call: PreparedCall) -> AsyncIterator[LMChunk]:
        chunks = self.provider.astream(call.request)
        try:
            first = await self._agated(call, lambda: anext(chunks, None))
            if first is not None:
                yield first
                async for chunk in chunks:
                    yield chunk
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    # --- calling ----------------------------------------------------------------------------

    def __call__(
        self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> list[str]:
        """Complete the messages; one string per choice (``n`` of them)."""
        return list(self.forward(prompt, messages, **kwargs).outputs)

    async def acall(
        self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> list[str]:
        """Async twin of ``__call__``."""
        return list((await self.aforward(prompt, messages, **kwargs)).outputs)

    def forward(
        self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> LMResponse:
        """Like ``__call__`` but returns the whole :class:`LMResponse` (outputs and usage).

        Inside ``context(send_stream=fn)`` (as DSPy's ``settings.send_stream``) a
        single-choice call streams instead, handing each text chunk to
        ``fn(text, call_id)``; the call returns and records the same as without it.
        """
        started = time.perf_counter()
        call = self._prepare(prompt, messages, kwargs)
        send = current().get("send_stream")
        if send is not None and call.request.n == 1:
            return self._forward_streamed(call, started, send)
        cached, peek = self._cached_or_peek(call)
        if cached is not None:
            self._record(call, cached, started, cache_hit=True)
            return cached
        try:
            response = call.policy.call(
                lambda: self._gated(call, lambda: self.provider.complete(call.request), peek)
            )
        except Exception as error:
            stale = self._stale(call, error)
            if stale is None:
                self._record_failure(call, started, error)
                raise
            self._record(call, stale, started, cache_hit=True, stale=True)
            return stale
        hit = peek is not None and response is peek.hit
        self._record(call, response, started, cache_hit=hit)
        return response

    async def aforward(
        self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> LMResponse:
        """Async twin of :meth:`forward`."""
        started = time.perf_counter()
        call = self._prepare(prompt, messages, kwargs)
        cached = self._cached(call)
        if cached is not None:
            self._record(call, cached, started, cache_hit=True)
            return cached
        try:
            response = await call.policy.acall(
                lambda: self._agated(call, lambda: self.provider.acomplete(call.request))
            )
        except Exception as error:
            stale = self._stale(call, error)
            if stale is None:
                self._record_failure(call, started, error)
                raise
            self._record(call, stale, started, cache_hit=True, stale=True)
            return stale
        self._record(call, response, started, cache_hit=False)
        return response

    def _prepare_stream(
        self, prompt: str | None, messages: Any, kwargs: dict[str, Any]
    ) -> PreparedCall:
        call = self._prepare(prompt, messages, kwargs)
        if call.request.n != 1:
            raise ConfigurationError("streaming supports n=1 only", context={"model": self.model})
        return call

    def stream(
        self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> Iterator[str]:
        """Text chunks as the server sends them; the full text lands in the history at the end."""
        started = time.perf_counter()
        call = self._prepare_stream(prompt, messages, kwargs)
        return self._stream(call, started)

    def _forward_streamed(
        self, call: PreparedCall, started: float, send: Callable[[str, str], None]
    ) -> LMResponse:
        call_id = uuid.uuid4().hex
        chunks = self._stream(call, started)
        while True:
            try:
                send(next(chunks), call_id)
            except StopIteration as done:
                return done.value

    def _stream(self, call: PreparedCall, started: float) -> Generator[str, None, LMResponse]:
        cached = self._cached(call)
        if cached is not None:
            self._record(call, cached, started, cache_hit=True, stream=True)
            yield cached.outputs[0]
            return cached
        builder = StreamedResponse(self.model_name)
        try:
            for chunk in call.policy.iterate(lambda: self._open_stream(call)):
                builder.add(chunk)
                if chunk.text:
                    yield chunk.text
        except Exception as error:
            stale = None if builder.parts else self._stale(call, error)
            if stale is None:
                self._record_failure(call, started, error, stream=True)
                raise
            self._record(call, stale, started, cache_hit=True, stream=True, stale=True)
            yield stale.outputs[0]
            return stale
        response = builder.response()
        self._record(call, response, started, cache_hit=False, stream=True)
        return response

    def astream(
        self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> AsyncIterator[str]:
        """Async twin of :meth:`stream`."""
        started = time.perf_counter()
        call = self._prepare_stream(prompt, messages, kwargs)
        return self._astream(call, started)

    async def _astream(self, call: PreparedCall, started: float) -> AsyncIterator[str]:
        cached = self._cached(call)
        if cached is not None:
            self._record(call, cached, started, cache_hit=True, stream=True)
            yield cached.outputs[0]
            return
        builder = StreamedResponse(self.model_name)
        try:
            async for chunk in call.policy.aiterate(lambda: self._aopen_stream(call)):
                builder.add(chunk)
                if chunk.text:
                    yield chunk.text
        except Exception as error:
            self._record_failure(call, started, error, stream=True)
            raise
        self._record(call, builder.response(), started, cache_hit=False, stream=True)

    def inspect_history(self, n: int = 1) -> None:
        """Print this LM's last ``n`` calls."""
        global_history.print_history(self.history[-n:] if n > 0 else [])

    # --- copies and saved state -------------------------------------------------------------

    def copy(self, **kwargs: Any) -> LM:
        """A new LM with some settings or default options changed and an empty history.

        Constructor settings (model, cache, num_retries, ...) are replaced; other keys
        update ``kwargs``, and a ``None`` value removes an option.
        """
        args = dict(self._init_args)
        options = dict(self.kwargs)
        for key, value in kwargs.items():
            if key in args:
                args[key] = value
            elif value is None:
                options.pop(key, None)
            else:
                options[key] = value
        return LM(**args, **options)

    def __deepcopy__(self, memo: dict[int, Any]) -> LM:
        # Programs get deep-copied by optimizers; the provider (and its HTTP client) is
        # shared, the options and history are copied.
        new = copy.copy(self)
        new.kwargs = copy.deepcopy(self.kwargs, memo)
        new.history = list(self.history)
        new._history_lock = threading.Lock()
        return new

    def dump_state(self) -> dict[str, Any]:
        """The LM in DSPy's saved form (so DSPy can load it); never the key or the base URL."""
        return {
            "_dspy_lm_class": "dspy.clients.lm.LM",
            "model": self.model,
            "model_type": self.model_type,
            "cache": self.cache,
            "num_retries": self.num_retries,
            **copy.deepcopy(self.kwargs),
            "engine": "litellm",
            "finetuning_model": None,
            "launch_kwargs": {},
            "train_kwargs": {},
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], *, allow_unsafe_lm_state: bool = False) -> LM:
        """Rebuild an LM from :meth:`dump_state` output (ours or DSPy's).

        Endpoints and keys found in a saved state are dropped unless
        ``allow_unsafe_lm_state``: a loaded program must not redirect calls.
        """
        args = {k: v for k, v in state.items() if k not in _DSPY_STATE_ONLY}
        if not allow_unsafe_lm_state:
            for name in _UNSAFE_STATE:
                args.pop(name, None)
        if "model" not in args:
            raise ConfigurationError(
                "saved LM state has no 'model'", context={"keys": sorted(state)}
            )
        return cls(**args)

"""The LM facade: one object per model, called like DSPy's ``dspy.LM``.

``LM("openai/gpt-4o-mini")`` picks the provider from the model prefix and the
provider settings, and every call goes cache -> provider (with retries; each attempt
through the process's provider gate, see :mod:`dspyq.lm.gate`) -> history, and is
reported as an ``lm_request`` event (:mod:`dspyq.lm.observe`).
Keys come from the arguments or the settings, are held as ``SecretStr``, and never
reach the history, ``dump_state`` or error messages.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping
from typing import Any, TextIO

import httpx
from pydantic import SecretStr

from dspyq.core.callbacks import with_callbacks
from dspyq.core.context import current, setting
from dspyq.errors import ConfigurationError
from dspyq.lm.attempt import agated, aopen_stream, cached_or_peek, gated, open_stream
from dspyq.lm.cache import default_cache
from dspyq.lm.call import PreparedCall, StreamedResponse, prepare_call
from dspyq.lm.degrade import stale_answer
from dspyq.lm.finetune import Finetunable
from dspyq.lm.pretty import pretty_print_history
from dspyq.lm.privacy import REDACT_MESSAGES_KEY
from dspyq.lm.providers import HTTPProvider, ProviderConfig, provider_class
from dspyq.lm.recording import CallRecorder, lm_price_table
from dspyq.lm.request import LMResponse, choice_outputs
from dspyq.lm.saved_state import lm_args_from_state, lm_state
from dspyq.resilience.retry import RetryPolicy
from dspyq.settings import get_settings, split_model

__all__ = ["LM", "split_model"]


class LM(Finetunable):
    """A language model behind an HTTP provider; see the module docstring.

    ``temperature``, ``max_tokens`` and any extra ``kwargs`` are default request
    options (``lm.kwargs``) that each call may override. ``http_client`` /
    ``async_http_client`` are the seam for tests and connection tuning;
    ``retry_policy`` sets the backoff shape (``num_retries`` still counts);
    ``prices`` overrides the price table for this LM (a :class:`Price`, a
    ``(input, output)`` pair for this model, or a mapping of model -> price).
    ``finetuning_model``, ``train_kwargs`` and ``launch_kwargs`` are DSPy's fine-tuning
    settings (:class:`~dspyq.lm.finetune.Finetunable`), never request options.
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
            **self._take_finetune_args(kwargs),
        }
        config = ProviderConfig.for_model(
            model,
            provider_name,
            provider_settings,
            api_base=api_base,
            api_key=api_key,
            timeout=timeout,
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
        self._recorder = CallRecorder(
            model, provider_name, model_type, lm_price_table(model, prices)
        )
        self._history_lock = threading.Lock()

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

    def _from_cache(
        self, call: PreparedCall, started: float, *, stream: bool = False
    ) -> LMResponse | None:
        """The cached answer, recorded as a hit; None on a miss."""
        cached = default_cache().get(call.key) if call.key is not None else None
        if cached is not None:
            self._record(call, cached, started, cache_hit=True, stream=stream)
        return cached

    def _record(
        self, call: PreparedCall, response: LMResponse, started: float, **outcome: bool
    ) -> None:
        """See :meth:`CallRecorder.answered` (``cache_hit``, ``stream``, ``stale``)."""
        self._recorder.answered(
            self.history, self._history_lock, call, response, started, **outcome
        )

    def _record_failure(
        self, call: PreparedCall, started: float, error: Exception, *, stream: bool = False
    ) -> None:
        self._recorder.failed(call, started, error, stream=stream)

    def _stale_or_raise(
        self, call: PreparedCall, started: float, error: Exception, *, stream: bool = False
    ) -> LMResponse:
        """The last resort when the provider is unavailable (see :mod:`dspyq.lm.degrade`):
        a stale cached answer, recorded; else the failure is recorded and ``error`` raised."""
        stale = stale_answer(
            default_cache(), call.key, error, provider=self.provider_name, model=self.model
        )
        if stale is None:
            self._record_failure(call, started, error, stream=stream)
            raise error
        self._record(call, stale, started, cache_hit=True, stream=stream, stale=True)
        return stale

    # --- calling ----------------------------------------------------------------------------

    @with_callbacks
    def __call__(
        self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> list[Any]:
        """Complete the messages; one string per choice (``n`` of them), or
        ``{"text", "tool_calls"}`` for a choice that called tools."""
        return choice_outputs(self.forward(prompt, messages, **kwargs))

    @with_callbacks
    async def acall(
        self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> list[Any]:
        """Async twin of ``__call__``."""
        return choice_outputs(await self.aforward(prompt, messages, **kwargs))

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
        cached, peek = cached_or_peek(call)
        if cached is not None:
            self._record(call, cached, started, cache_hit=True)
            return cached
        send = lambda: self.provider.complete(call.request)  # noqa: E731
        try:
            response = call.policy.call(
                lambda: gated(self.provider_name, self.model, call, send, peek)
            )
        except Exception as error:
            return self._stale_or_raise(call, started, error)
        hit = peek is not None and response is peek.hit
        self._record(call, response, started, cache_hit=hit)
        return response

    async def aforward(
        self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> LMResponse:
        """Async twin of :meth:`forward` (streaming too, on a thread: chunks keep their order)."""
        started = time.perf_counter()
        call = self._prepare(prompt, messages, kwargs)
        send = current().get("send_stream")
        if send is not None and call.request.n == 1:
            return await asyncio.to_thread(self._forward_streamed, call, started, send)
        cached = self._from_cache(call, started)
        if cached is not None:
            return cached
        send = lambda: self.provider.acomplete(call.request)  # noqa: E731
        try:
            response = await call.policy.acall(
                lambda: agated(self.provider_name, self.model, call, send)
            )
        except Exception as error:
            return self._stale_or_raise(call, started, error)
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
        cached = self._from_cache(call, started, stream=True)
        if cached is not None:
            yield cached.outputs[0]
            return cached
        builder = StreamedResponse(self.model_name)
        opened = lambda: open_stream(self.provider, self.provider_name, self.model, call)  # noqa: E731
        try:
            for chunk in call.policy.iterate(opened):
                builder.add(chunk)
                if chunk.text:
                    yield chunk.text
        except Exception as error:
            if builder.parts:  # part of the answer is out: a stale one cannot replace it
                self._record_failure(call, started, error, stream=True)
                raise
            stale = self._stale_or_raise(call, started, error, stream=True)
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
        cached = self._from_cache(call, started, stream=True)
        if cached is not None:
            yield cached.outputs[0]
            return
        builder = StreamedResponse(self.model_name)
        opened = lambda: aopen_stream(self.provider, self.provider_name, self.model, call)  # noqa: E731
        try:
            async for chunk in call.policy.aiterate(opened):
                builder.add(chunk)
                if chunk.text:
                    yield chunk.text
        except Exception as error:
            self._record_failure(call, started, error, stream=True)
            raise
        self._record(call, builder.response(), started, cache_hit=False, stream=True)

    def inspect_history(self, n: int = 1, file: TextIO | None = None) -> None:
        """Print this LM's last ``n`` calls, laid out as DSPy does."""
        pretty_print_history(self.history, n, file=file)

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
        state = lm_state(self.model, self.model_type, self.cache, self.num_retries, self.kwargs)
        return {**state, **copy.deepcopy(self.finetune_settings())}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], *, allow_unsafe_lm_state: bool = False) -> LM:
        """Rebuild an LM from :meth:`dump_state` output (ours or DSPy's).

        Endpoints and keys found in a saved state are dropped unless
        ``allow_unsafe_lm_state``: a loaded program must not redirect calls.
        """
        return cls(**lm_args_from_state(state, allow_unsafe_lm_state=allow_unsafe_lm_state))

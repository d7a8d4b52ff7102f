"""The HTTP plumbing shared by providers: JSON POSTs and SSE streams over httpx.

Subclasses describe a protocol (URL, headers, body, how to read answers and stream
events); this base sends requests, maps failures to :mod:`dspyq.errors`, and checks
that a stream really finished. Sync calls use the client handed in, else the one bound
in the runtime configuration under :data:`HTTP_CLIENT_KEY` (a worker binds its job
thread's), else, in a plain process, one process-wide ``httpx.Client`` (thread-safe,
pooled, kept alive), as DSPy's LMs share one; async calls use the given
``httpx.AsyncClient`` or a short-lived one per call, because an async client is tied to
the event loop that first used it.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import httpx

from dspyq.core.context import setting
from dspyq.lm.providers.base import ProviderConfig
from dspyq.lm.providers.errors import error_from_response, error_from_transport, malformed
from dspyq.lm.providers.sse import SSEEvent, SSEParser
from dspyq.lm.providers.transport import post_json
from dspyq.lm.request import LMChunk, LMRequest, LMResponse

HTTP_CLIENT_KEY = "lm_http_client"
"""The runtime configuration key a worker binds its HTTP client under."""

# The plain process's defaults, built on first use (a worker binds its own client).
_shared_client: httpx.Client | None = None
_shared_ssl: ssl.SSLContext | None = None
_shared_lock = threading.Lock()


def shared_ssl_context() -> ssl.SSLContext:
    """One TLS context for every short-lived async client (building one costs ~100 ms)."""
    global _shared_ssl
    with _shared_lock:
        if _shared_ssl is None:
            _shared_ssl = httpx.create_ssl_context()
        return _shared_ssl


def shared_http_client() -> httpx.Client:
    """The process-wide sync client used when an LM is given none."""
    global _shared_client
    with _shared_lock:
        if _shared_client is None or _shared_client.is_closed:
            _shared_client = httpx.Client(
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20)
            )
        return _shared_client


class StreamDecoder:
    """Reads one protocol's stream events into chunks.

    ``done`` turns true at the protocol's end marker (later events are ignored);
    ``finished`` says whether the stream may end here without being truncated.
    """

    done: bool = False

    @property
    def finished(self) -> bool:
        return self.done

    def feed(self, event: SSEEvent) -> list[LMChunk]:
        raise NotImplementedError


class HTTPProvider:
    """Base class of the HTTP providers; see the module docstring."""

    kind: ClassVar[str] = ""
    supports_response_schema: ClassVar[bool] = False

    def __init__(
        self,
        config: ProviderConfig,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = config
        self._http_client = http_client
        self._async_http_client = async_http_client

    # --- protocol description (subclasses) -------------------------------------------

    def url(self) -> str:
        raise NotImplementedError

    def headers(self) -> dict[str, str]:
        raise NotImplementedError

    def build_body(self, request: LMRequest, *, stream: bool) -> dict[str, Any]:
        raise NotImplementedError

    def parse_body(self, body: dict[str, Any], request: LMRequest) -> LMResponse:
        raise NotImplementedError

    def stream_decoder(self, request: LMRequest) -> StreamDecoder:
        raise NotImplementedError

    # --- plumbing ------------------------------------------------------------------

    @property
    def http_client(self) -> httpx.Client:
        if self._http_client is not None:
            return self._http_client
        bound: httpx.Client | None = setting(HTTP_CLIENT_KEY)
        return bound if bound is not None else shared_http_client()

    def _timeout(self, request: LMRequest) -> float:
        return request.timeout if request.timeout is not None else self.config.timeout

    def _all_headers(self) -> dict[str, str]:
        return {"content-type": "application/json", **self.headers(), **self.config.headers}

    def _read_json(self, response: httpx.Response, text: str, request: LMRequest) -> LMResponse:
        url = str(response.request.url)
        if response.status_code >= 300:
            raise error_from_response(response, text, self.config, request.model)
        try:
            body = json.loads(text)
        except ValueError:
            raise malformed(
                "the body is not JSON", self.config, request.model, url, response.status_code, text
            ) from None
        if not isinstance(body, dict):
            raise malformed(
                "the body is not a JSON object",
                self.config,
                request.model,
                url,
                response.status_code,
                text,
            )
        try:
            return self.parse_body(body, request)
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise malformed(
                f"unexpected JSON shape ({type(exc).__name__}: {exc})",
                self.config,
                request.model,
                url,
                response.status_code,
                text,
            ) from None

    def post(self, request: LMRequest) -> LMResponse:
        """One non-streaming request."""
        url = self.url()
        body = self.build_body(request, stream=False)
        client = self.http_client
        try:
            response = post_json(client, url, body, self._all_headers(), self._timeout(request))
            text = response.text
        except httpx.HTTPError as exc:
            raise error_from_transport(exc, self.config, request.model, url) from None
        return self._read_json(response, text, request)

    async def apost(self, request: LMRequest) -> LMResponse:
        """Async twin of :meth:`post`."""
        url = self.url()
        body = self.build_body(request, stream=False)
        async with self._async_client() as client:
            try:
                response = await client.post(
                    url, json=body, headers=self._all_headers(), timeout=self._timeout(request)
                )
                text = response.text
            except httpx.HTTPError as exc:
                raise error_from_transport(exc, self.config, request.model, url) from None
        return self._read_json(response, text, request)

    @asynccontextmanager
    async def _async_client(self) -> AsyncIterator[httpx.AsyncClient]:
        if self._async_http_client is not None:
            yield self._async_http_client
            return
        async with httpx.AsyncClient(verify=shared_ssl_context()) as client:
            yield client

    def _decode(
        self, decoder: StreamDecoder, event: SSEEvent | None, request: LMRequest, url: str
    ) -> list[LMChunk]:
        if event is None or decoder.done:
            return []
        try:
            return decoder.feed(event)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise malformed(
                f"unreadable stream event ({type(exc).__name__}: {exc})",
                self.config,
                request.model,
                url,
                200,
                event.data,
            ) from None

    def stream(self, request: LMRequest) -> Iterator[LMChunk]:
        """Stream one request, yielding chunks as the server sends them."""
        url = self.url()
        body = self.build_body(request, stream=True)
        decoder = self.stream_decoder(request)
        parser = SSEParser()
        try:
            with self.http_client.stream(
                "POST", url, json=body, headers=self._all_headers(), timeout=self._timeout(request)
            ) as response:
                if response.status_code >= 300:
                    text = response.read().decode("utf-8", "replace")
                    raise error_from_response(response, text, self.config, request.model)
                for line in response.iter_lines():
                    yield from self._decode(decoder, parser.feed(line), request, url)
                yield from self._decode(decoder, parser.flush(), request, url)
        except httpx.HTTPError as exc:
            raise error_from_transport(exc, self.config, request.model, url) from None
        if not decoder.finished:
            raise malformed(
                "the stream ended before its end marker", self.config, request.model, url, 200
            )

    async def astream(self, request: LMRequest) -> AsyncIterator[LMChunk]:
        """Async twin of :meth:`stream`."""
        url = self.url()
        body = self.build_body(request, stream=True)
        decoder = self.stream_decoder(request)
        parser = SSEParser()
        async with self._async_client() as client:
            try:
                async with client.stream(
                    "POST",
                    url,
                    json=body,
                    headers=self._all_headers(),
                    timeout=self._timeout(request),
                ) as response:
                    if response.status_code >= 300:
                        text = (await response.aread()).decode("utf-8", "replace")
                        raise error_from_response(response, text, self.config, request.model)
                    async for line in response.aiter_lines():
                        for chunk in self._decode(decoder, parser.feed(line), request, url):
                            yield chunk
                    for chunk in self._decode(decoder, parser.flush(), request, url):
                        yield chunk
            except httpx.HTTPError as exc:
                raise error_from_transport(exc, self.config, request.model, url) from None
        if not decoder.finished:
            raise malformed(
                "the stream ended before its end marker", self.config, request.model, url, 200
            )

    # Providers whose protocol has a native ``n`` use these directly; others override.

    def complete(self, request: LMRequest) -> LMResponse:
        return self.post(request)

    async def acomplete(self, request: LMRequest) -> LMResponse:
        return await self.apost(request)

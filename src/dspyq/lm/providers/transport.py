"""How a provider's JSON POST goes out: the one interface, :func:`post_json`, two paths.

An LM call is one POST of a JSON body, with no cookies, auth flow, redirects or event
hooks; ``httpx.Client.post`` walks all of those layers anyway (building and merging a
URL, headers, cookies, a redirect loop, an auth generator, a bound stream), which cost a
worker as much CPU as the HTTP exchange itself (7.3% against 7.8% of the worker's CPU
under py-spy). So there are two paths, chosen by the client handed in:

- ``"client"``: any ``httpx.Client``; the request goes through ``client.post``.
- ``"transport"``: a :class:`DirectClient` (an ``httpx.Client`` built on an
  ``httpx.HTTPTransport`` of its own). Its JSON POSTs skip the client's layers and go
  straight to that transport's ``handle_request`` with an ``httpx.Request`` carrying the
  client's default headers and the call's timeout: the same httpcore connection pool,
  bytes on the wire and httpx exceptions. Everything else (streams, other requests) is
  the plain client. Left out by the direct path: cookies (none is kept or sent back) and
  ``response.elapsed``. It is not taken when the environment names a proxy (httpx would
  route through it; the direct path would not).

Workers pick the path with the ``lm_http_path`` setting; tests run the same cases
through both (tests/unit/test_http_paths.py).
"""

from __future__ import annotations

import functools
import ssl
import urllib.request
from collections.abc import Mapping
from typing import Any, Literal

import httpx

__all__ = ["HTTP_PATHS", "DirectClient", "HTTPPath", "http_client", "post_json"]

HTTPPath = Literal["client", "transport"]
HTTP_PATHS: tuple[HTTPPath, ...] = ("client", "transport")


_MERGED_HEADERS_KEPT = 64
"""Distinct header sets a :class:`DirectClient` keeps merged (a worker's providers
send a handful; a rotating key only refills it)."""


@functools.lru_cache(maxsize=64)
def _timeout_extension(seconds: float) -> dict[str, float | None]:
    return httpx.Timeout(seconds).as_dict()


@functools.lru_cache(maxsize=256)
def _parsed_url(url: str) -> httpx.URL:
    # A worker POSTs to a handful of endpoints: parse each once (httpx.URL is immutable).
    return httpx.URL(url)


class DirectClient(httpx.Client):
    """``httpx.Client`` whose JSON POSTs through :func:`post_json` skip its layers.

    ``verify`` and ``limits`` go to the transport it is built on; other arguments as
    ``httpx.Client``'s (``transport`` and ``mounts`` excepted: it makes its own).
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits | None = None,
        **kwargs: Any,
    ) -> None:
        transport = httpx.HTTPTransport(verify=verify, limits=limits or httpx.Limits())
        super().__init__(verify=verify, transport=transport, **kwargs)
        proxies = urllib.request.getproxies() if self.trust_env else {}
        proxies.pop("no", None)  # NO_PROXY alone names no proxy
        self.direct_transport: httpx.HTTPTransport | None = None if proxies else transport
        self._merged_headers: dict[tuple[Any, ...], httpx.Headers] = {}

    def request_headers(self, headers: Mapping[str, str]) -> httpx.Headers:
        """The client's default headers updated with ``headers``, as ``client.post``
        merges them: built once per distinct pair (a provider sends the same few), and
        rebuilt when the defaults change."""
        key = (*self.headers.raw, *headers.items())
        merged = self._merged_headers.get(key)
        if merged is None:
            if len(self._merged_headers) >= _MERGED_HEADERS_KEPT:
                self._merged_headers.clear()
            merged = self.headers.copy()
            merged.update(headers)
            self._merged_headers[key] = merged
        return merged


def http_client(path: HTTPPath, **kwargs: Any) -> httpx.Client:
    """A sync client for ``path`` (arguments as ``httpx.Client``'s)."""
    if path == "transport":
        return DirectClient(**kwargs)
    return httpx.Client(**kwargs)


def post_json(
    client: httpx.Client,
    url: str,
    body: Any,
    headers: Mapping[str, str],
    timeout: float,
) -> httpx.Response:
    """POST ``body`` as JSON and read the whole answer, on the path ``client`` stands for.

    Raises httpx's exceptions, as ``client.post`` does.
    """
    if not isinstance(client, DirectClient) or client.direct_transport is None:
        return client.post(url, json=body, headers=headers, timeout=timeout)
    direct = client.direct_transport
    if client.is_closed:
        raise RuntimeError("Cannot send a request, as the client has been closed.")
    request = httpx.Request(
        "POST",
        _parsed_url(url),
        json=body,
        headers=client.request_headers(headers),  # httpx.Request copies them
        extensions={"timeout": _timeout_extension(timeout)},
    )
    response = direct.handle_request(request)
    response.request = request
    try:
        response.read()
    finally:
        response.close()
    return response

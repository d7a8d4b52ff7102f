"""An httpx client whose JSON POSTs go straight to its transport.

An LM call is one POST of a JSON body with no cookies, auth flow, redirects or event
hooks; ``httpx.Client.send`` walks all of those layers anyway, building and merging
objects for each, which cost a worker about 40% of an LM call's CPU (0.46 against
0.28 ms per call to a local server). :class:`DirectClient` is a plain ``httpx.Client``
for everything else (streams, other requests); its :meth:`DirectClient.post_json`
hands an ``httpx.Request`` carrying the client's default headers and the call's timeout
to a transport of the client's own (:class:`~dspyq.lm.providers.stdlib_transport.StdlibTransport`,
HTTP/1.1 on ``http.client``, a third of httpcore's CPU per request), which raises httpx's
exceptions as usual. What the direct path leaves out: cookies (none is kept or sent back) and
``response.elapsed``. The whole client is used instead when the environment names a
proxy, or when the client was given anything the direct path would ignore (a transport,
mounts, a proxy, auth, event hooks, cookies, a base URL, HTTP/2 or a client
certificate).
"""

from __future__ import annotations

import functools
import json
import ssl
import urllib.request
from collections.abc import Mapping
from typing import Any

import httpx

from dspyq.lm.providers.stdlib_transport import StdlibTransport

__all__ = ["DirectClient", "encode_json"]

_WHOLE_CLIENT_OPTIONS = frozenset(
    {"transport", "mounts", "proxy", "auth", "event_hooks", "cookies", "base_url", "http2", "cert"}
)
"""Client arguments the direct path would not honour: given any, it is not taken."""


def encode_json(body: Any) -> bytes:
    """``body`` as httpx encodes a ``json=`` argument (compact, UTF-8, no NaN)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


@functools.lru_cache(maxsize=256)
def _parsed_url(url: str) -> httpx.URL:
    return httpx.URL(url)  # parsing a URL is a fifth of the direct path's own CPU


@functools.lru_cache(maxsize=64)
def _timeout_extension(seconds: float) -> dict[str, float]:
    return httpx.Timeout(seconds).as_dict()  # type: ignore[return-value]


class DirectClient(httpx.Client):
    """``httpx.Client`` plus :meth:`post_json`; arguments as ``httpx.Client``'s."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits | None = None,
        **kwargs: Any,
    ) -> None:
        limits = limits or httpx.Limits()
        super().__init__(verify=verify, limits=limits, **kwargs)
        # httpx mounts proxy transports from the environment; the direct path does not
        # look at them, so it is only taken when there are none (NO_PROXY alone names
        # none). It has a transport of its own: handing one to httpx.Client would make
        # it ignore those proxies.
        proxies = urllib.request.getproxies() if self.trust_env else {}
        proxies.pop("no", None)
        self._direct: StdlibTransport | None = None
        if not proxies and not _WHOLE_CLIENT_OPTIONS.intersection(kwargs):
            self._direct = StdlibTransport(verify=verify, limits=limits, trust_env=self.trust_env)

    def close(self) -> None:
        super().close()
        if self._direct is not None:
            self._direct.close()

    def __exit__(self, *exc_info: Any) -> None:
        self.close()  # what httpx's own exit does, and the direct transport with it

    def post_json(
        self, url: str, content: bytes, headers: Mapping[str, str], timeout: float
    ) -> httpx.Response:
        """POST ``content`` (JSON) and read the whole answer, as ``post(...)`` would."""
        if self._direct is None:
            return self.post(url, content=content, headers=headers, timeout=timeout)
        if self.is_closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        merged = self.headers.copy()
        merged.update(headers)
        request = httpx.Request(
            "POST",
            _parsed_url(url),
            content=content,
            headers=merged,
            extensions={"timeout": _timeout_extension(timeout)},
        )
        response = self._direct.handle_request(request)
        response.request = request
        try:
            response.read()
        finally:
            response.close()
        return response

"""An httpx transport that speaks HTTP/1.1 through the standard library's ``http.client``.

httpx's own transport (httpcore over h11) builds a state machine, events and a pool
entry for every request: 0.30 ms of CPU for one JSON POST to a local server, where
``http.client`` needs 0.12 ms. On a worker, where one LM call's POST is the largest
single part of a job's CPU, that difference is a tenth of the job. :class:`StdlibTransport`
keeps httpx as the interface (an ``httpx.Request`` in, an ``httpx.Response`` out, httpx's
exceptions for every failure, its timeouts, TLS context and content decoding) and hands
the wire to ``http.client``.

It is made for :class:`~dspyq.lm.providers.direct.DirectClient`'s JSON POSTs: the whole
answer is read before the response is returned (no streaming: streams take httpx's own
transport), plain HTTP/1.1 only. Idle connections are kept per origin, up to
``max_keepalive_connections`` and for ``keepalive_expiry`` seconds; one the server has
closed meanwhile is noticed before it is used again, as httpcore does. It does not cap
the connections open at once (``max_connections``): each thread of a worker has its own
client, which has at most one request in flight.
"""

from __future__ import annotations

import http.client
import select
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

__all__ = ["StdlibTransport"]

_Origin = tuple[str, str, int]


class _Idle:
    __slots__ = ("conn", "since")

    def __init__(self, conn: http.client.HTTPConnection) -> None:
        self.conn = conn
        self.since = time.monotonic()


class StdlibTransport(httpx.BaseTransport):
    """``httpx.HTTPTransport``'s place for whole-body HTTP/1.1 requests."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits | None = None,
        trust_env: bool = True,
    ) -> None:
        limits = limits or httpx.Limits()
        self._verify = verify
        self._trust_env = trust_env
        self._tls: ssl.SSLContext | None = verify if isinstance(verify, ssl.SSLContext) else None
        self._max_idle = limits.max_keepalive_connections
        self._expiry = limits.keepalive_expiry
        self._idle: dict[_Origin, list[_Idle]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}", request=request)
        origin = (scheme, url.host, url.port or (443 if scheme == "https" else 80))
        timeouts = request.extensions.get("timeout", {})
        conn = self._idle_connection(origin) or self._connect(origin, timeouts, request)
        reusable = False
        try:
            status, reason, headers, body, reusable = self._exchange(conn, request, timeouts)
        finally:
            if reusable:
                self._keep(origin, conn)
            else:
                conn.close()
        return httpx.Response(
            status,
            headers=headers,
            stream=httpx.ByteStream(body),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason.encode("latin-1")},
        )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for entries in idle.values():
            for entry in entries:
                entry.conn.close()

    # --- connections -------------------------------------------------------------------

    def _connect(
        self, origin: _Origin, timeouts: dict[str, Any], request: httpx.Request
    ) -> http.client.HTTPConnection:
        scheme, host, port = origin
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(
                host, port, timeout=timeouts.get("connect"), context=self._tls_context()
            )
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeouts.get("connect"))
        with _mapped(request, "connect"):
            conn.connect()  # with TCP_NODELAY, as http.client sets it
        return conn

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:  # built on first use: reading the CA bundle costs ~20 ms
            self._tls = httpx.create_ssl_context(verify=self._verify, trust_env=self._trust_env)
        return self._tls

    def _idle_connection(self, origin: _Origin) -> http.client.HTTPConnection | None:
        """The most recently used idle connection to ``origin`` that is still open."""
        now = time.monotonic()
        while True:
            with self._lock:
                entries = self._idle.get(origin)
                if not entries:
                    return None
                entry = entries.pop()
            fresh = self._expiry is None or now - entry.since <= self._expiry
            if fresh and not _closed_by_peer(entry.conn):
                return entry.conn
            entry.conn.close()

    def _keep(self, origin: _Origin, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            entries = self._idle.setdefault(origin, [])
            if not self._closed and (self._max_idle is None or len(entries) < self._max_idle):
                entries.append(_Idle(conn))
                return
        conn.close()

    # --- one exchange --------------------------------------------------------------------

    def _exchange(
        self, conn: http.client.HTTPConnection, request: httpx.Request, timeouts: dict[str, Any]
    ) -> tuple[int, str, list[tuple[bytes, bytes]], bytes, bool]:
        """Send ``request`` on ``conn`` and read the whole answer."""
        raw_url = request.url.raw_path.decode("ascii")
        content = request.read()
        with _mapped(request, "write"):
            conn.sock.settimeout(timeouts.get("write"))
            conn.putrequest(request.method, raw_url, skip_host=True, skip_accept_encoding=True)
            for name, value in request.headers.raw:
                conn.putheader(name, value)
            conn.endheaders(content or None)
        with _mapped(request, "read"):
            conn.sock.settimeout(timeouts.get("read"))
            response = conn.getresponse()
            body = response.read()
        headers = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in response.msg.items()
        ]
        return response.status, response.reason, headers, body, not response.will_close


def _closed_by_peer(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle connection was closed by the server (it became readable: EOF)."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


_TIMEOUTS = {
    "connect": httpx.ConnectTimeout,
    "write": httpx.WriteTimeout,
    "read": httpx.ReadTimeout,
}
_FAILURES = {"connect": httpx.ConnectError, "write": httpx.WriteError, "read": httpx.ReadError}


@contextmanager
def _mapped(request: httpx.Request, stage: str) -> Iterator[None]:
    """Raise failures on the wire as the httpx exceptions its own transport raises.

    ``stage`` is what was being done: "connect", "write" or "read".
    """
    try:
        yield
    except TimeoutError as exc:  # socket.timeout is TimeoutError
        raise _TIMEOUTS[stage](str(exc) or "timed out", request=request) from exc
    except http.client.RemoteDisconnected as exc:
        raise httpx.RemoteProtocolError(
            "Server disconnected without sending a response.", request=request
        ) from exc
    except http.client.HTTPException as exc:
        raise httpx.RemoteProtocolError(str(exc) or type(exc).__name__, request=request) from exc
    except OSError as exc:  # refused, reset, unreachable, TLS failures
        raise _FAILURES[stage](str(exc) or type(exc).__name__, request=request) from exc

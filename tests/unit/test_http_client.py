"""LM calls' POSTs go through a plain ``httpx.Client``: kept alive, proxied as the
environment says, the call's timeout kept, failures mapped to dspyq errors.

Against a small HTTP/1.1 server of the test's own, which records the client socket of
each request (the same socket twice: the connection was kept alive).
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from dspyq.errors import ProviderUnavailableError
from dspyq.lm.providers import OpenAIProvider, ProviderConfig
from dspyq.lm.providers.http import shared_http_client
from dspyq.lm.request import LMRequest

ANSWER = {
    "choices": [{"message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    "model": "m",
}


class _Server:
    """A threaded HTTP/1.1 server answering every POST with ``ANSWER``."""

    def __init__(self) -> None:
        self.peers: list[tuple[str, int]] = []
        self.bodies: list[object] = []
        server = self

        class _Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                server.peers.append(self.client_address)
                server.bodies.append(
                    json.loads(self.rfile.read(int(self.headers["content-length"])))
                )
                body = json.dumps(ANSWER).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    running = _Server()
    yield running
    running.close()


def _provider(url: str, client: httpx.Client | None = None, timeout: float = 5.0) -> OpenAIProvider:
    config = ProviderConfig(name="openai", kind="openai", api_base=url, timeout=timeout)
    return OpenAIProvider(config, http_client=client)


def _request() -> LMRequest:
    return LMRequest(model="gpt-4o-mini", messages=[{"role": "user", "content": "héllo ✓"}])


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_calls_share_one_kept_alive_connection(server: _Server) -> None:
    provider = _provider(server.url)  # the process-wide client
    assert provider.http_client is shared_http_client()
    assert provider.complete(_request()).outputs == ["ok"]
    assert provider.complete(_request()).outputs == ["ok"]
    assert len(server.peers) == 2 and server.peers[0] == server.peers[1]
    assert server.bodies[0] == server.bodies[1]
    assert server.bodies[0]["messages"] == [{"role": "user", "content": "héllo ✓"}]  # type: ignore[index]


def test_a_proxy_in_the_environment_is_honoured(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{_closed_port()}")
    # The request goes to the (absent) proxy rather than straight to the server.
    with httpx.Client() as client, pytest.raises(ProviderUnavailableError):
        _provider(server.url, client).complete(_request())
    assert server.peers == []
    with httpx.Client(trust_env=False) as client:
        assert _provider(server.url, client).complete(_request()).outputs == ["ok"]


def test_the_calls_timeout_is_kept() -> None:
    with socket.socket() as silent:  # accepts the connection, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        with httpx.Client(timeout=60.0) as client:
            provider = _provider(url, client, timeout=0.2)
            with pytest.raises(ProviderUnavailableError, match="in time"):
                provider.complete(_request())

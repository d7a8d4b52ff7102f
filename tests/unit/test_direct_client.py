"""DirectClient: a JSON POST straight to the transport sends and reads what httpx's own
``post`` would, keeps the call's timeout, and leaves proxied environments to httpx."""

from __future__ import annotations

import socket

import httpx
import pytest

from dspyq.lm.providers.direct import DirectClient, encode_json
from dspyq.testing import FakeLMServer

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "héllo ✓"}]}
HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-direct-test"}


def _url(server: FakeLMServer) -> str:
    return f"{server.openai_base}/chat/completions"


def test_post_json_sends_and_reads_what_post_does(fake_lm: FakeLMServer) -> None:
    with httpx.Client() as plain, DirectClient() as direct:
        expected = plain.post(_url(fake_lm), json=BODY, headers=HEADERS)
        sent_by_post = fake_lm.requests[-1]
        got = direct.post_json(_url(fake_lm), encode_json(BODY), HEADERS, timeout=5.0)
        sent_direct = fake_lm.requests[-1]
    assert got.status_code == expected.status_code == 200
    assert got.json()["choices"] == expected.json()["choices"]
    assert str(got.request.url) == _url(fake_lm)
    assert sent_direct["body"] == sent_by_post["body"] == BODY
    assert sent_direct["headers"] == sent_by_post["headers"]
    assert encode_json(BODY) == httpx.Request("POST", "http://x", json=BODY).content


def test_post_json_keeps_the_timeout_of_the_call(fake_lm: FakeLMServer) -> None:
    fake_lm.fail_next(1, kind="slow", delay=1.0)
    with DirectClient() as direct, pytest.raises(httpx.ReadTimeout):
        direct.post_json(_url(fake_lm), encode_json(BODY), HEADERS, timeout=0.2)


def test_connection_errors_are_httpx_errors() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with DirectClient() as direct, pytest.raises(httpx.ConnectError):
        direct.post_json(f"http://127.0.0.1:{port}/v1/x", b"{}", HEADERS, timeout=2.0)


def test_a_proxy_in_the_environment_is_honoured(
    fake_lm: FakeLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port}")
    # The request must go to the (absent) proxy rather than straight to the server.
    seen = len(fake_lm.requests)
    with DirectClient() as direct, pytest.raises(httpx.ConnectError):
        direct.post_json(_url(fake_lm), encode_json(BODY), HEADERS, timeout=2.0)
    assert len(fake_lm.requests) == seen
    with DirectClient(trust_env=False) as direct:
        assert direct.post_json(_url(fake_lm), encode_json(BODY), HEADERS, 5.0).status_code == 200


def test_arguments_the_direct_path_would_ignore_are_honoured() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    with DirectClient(transport=httpx.MockTransport(answer)) as client:
        response = client.post_json("http://lm.invalid/v1/x", b"{}", HEADERS, timeout=2.0)
    assert response.json() == {"ok": True} and len(seen) == 1


def test_a_closed_client_refuses_to_send(fake_lm: FakeLMServer) -> None:
    client = DirectClient()
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.post_json(_url(fake_lm), encode_json(BODY), HEADERS, timeout=2.0)


def test_no_proxy_alone_keeps_the_direct_path(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("all_proxy", raising=False)
    monkeypatch.setenv("NO_PROXY", "localhost")
    with DirectClient() as client:
        assert client._direct is not None
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with DirectClient() as client:
        assert client._direct is None

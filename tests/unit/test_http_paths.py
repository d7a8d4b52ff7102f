"""The contract of an LM call's two HTTP paths (:mod:`dspyq.lm.providers.transport`):
the same cases through ``httpx.Client.post`` and through the direct transport give the
same requests on the wire, the same answers, the same dspyq errors and the same retries.

Against the fake LM server over real HTTP, for both protocols.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from dspyq.errors import DspyqError, ProviderUnavailableError
from dspyq.lm import LM
from dspyq.lm.providers.transport import HTTP_PATHS, DirectClient, HTTPPath, http_client
from dspyq.testing import FakeLMServer

PROTOCOLS = ["openai", "anthropic"]


def make_lm(server: FakeLMServer, protocol: str, client: httpx.Client, **options: Any) -> LM:
    settings: dict[str, Any] = {"api_key": "sk-paths", "cache": False, "http_client": client}
    settings.update(options)
    if protocol == "anthropic":
        return LM("anthropic/claude-fake", api_base=server.anthropic_base, **settings)
    return LM("openai/fake-model", api_base=server.openai_base, **settings)


@pytest.fixture
def clients() -> Iterator[Callable[[HTTPPath], httpx.Client]]:
    made: list[httpx.Client] = []

    def make(path: HTTPPath) -> httpx.Client:
        client = http_client(path, timeout=10.0)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def outcome(server: FakeLMServer, lm: LM, call: Callable[[LM], Any]) -> dict[str, Any]:
    """What a case shows: the answer or the error, and every request the server saw."""
    server.clear_requests()
    shown: dict[str, Any] = {}
    try:
        shown["answer"] = call(lm)
    except DspyqError as error:
        # The server's request ids and reset times differ from run to run; the rest must not.
        context = {k: v for k, v in error.context.items() if k != "url"}
        limits = context.get("rate_limit", {})
        context["rate_limit"] = {k: v for k, v in limits.items() if k.startswith(("limit", "rem"))}
        shown["error"] = (type(error).__name__, error.retry_strategy, context)
    shown["requests"] = [(r["body"], r["headers"], r["status"]) for r in server.requests]
    return shown


def both_paths(
    server: FakeLMServer,
    clients: Callable[[HTTPPath], httpx.Client],
    protocol: str,
    prepare: Callable[[FakeLMServer], None],
    call: Callable[[LM], Any],
    **options: Any,
) -> list[dict[str, Any]]:
    shown = []
    for path in HTTP_PATHS:
        prepare(server)
        shown.append(outcome(server, make_lm(server, protocol, clients(path), **options), call))
    return shown


def _nothing(server: FakeLMServer) -> None:
    return None


def _ask(lm: LM) -> Any:
    return lm("say something")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_answer_and_its_request_are_the_same_on_both_paths(
    fake_lm: FakeLMServer, clients: Callable[[HTTPPath], httpx.Client], protocol: str
) -> None:
    direct, plain = both_paths(fake_lm, clients, protocol, _nothing, _ask)
    assert "answer" in direct and direct == plain


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        ({"count": 5, "status": 500}, "ProviderUnavailableError"),
        ({"count": 5, "kind": "insufficient_quota"}, "QuotaExceededError"),
        ({"count": 5, "kind": "malformed"}, "MalformedResponseError"),
        ({"count": 5, "kind": "context_length"}, "ContextWindowExceededError"),
    ],
)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_failures_map_to_the_same_errors_after_the_same_retries(
    fake_lm: FakeLMServer,
    clients: Callable[[HTTPPath], httpx.Client],
    protocol: str,
    failure: dict[str, Any],
    error: str,
) -> None:
    def prepare(server: FakeLMServer) -> None:
        server.reset()
        server.fail_next(**failure)

    direct, plain = both_paths(fake_lm, clients, protocol, prepare, _ask, num_retries=1)
    assert direct["error"][0] == error
    assert direct == plain


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_retried_rate_limit_then_succeeds_the_same_way(
    fake_lm: FakeLMServer, clients: Callable[[HTTPPath], httpx.Client], protocol: str
) -> None:
    def prepare(server: FakeLMServer) -> None:
        server.reset()
        server.fail_next(1, 429, retry_after=0.05)

    direct, plain = both_paths(fake_lm, clients, protocol, prepare, _ask, num_retries=2)
    assert "answer" in direct and [r[2] for r in direct["requests"]] == [429, 200]
    assert direct == plain


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_stream_is_the_same_on_both_paths(
    fake_lm: FakeLMServer, clients: Callable[[HTTPPath], httpx.Client], protocol: str
) -> None:
    def prepare(server: FakeLMServer) -> None:
        server.reset()
        server.answer("alpha beta gamma delta")

    direct, plain = both_paths(
        fake_lm, clients, protocol, prepare, lambda lm: list(lm.stream("go"))
    )
    assert "".join(direct["answer"]) == "alpha beta gamma delta"
    assert direct == plain


@pytest.mark.parametrize("path", HTTP_PATHS)
def test_a_timeout_is_provider_unavailable_on_both_paths(
    fake_lm: FakeLMServer, clients: Callable[[HTTPPath], httpx.Client], path: HTTPPath
) -> None:
    fake_lm.fail_next(1, kind="slow", delay=2.0)
    lm = make_lm(fake_lm, "openai", clients(path), timeout=0.3, num_retries=0)
    with pytest.raises(ProviderUnavailableError) as caught:
        lm("hi")
    assert caught.value.context["cause"] == "ReadTimeout"


@pytest.mark.parametrize("path", HTTP_PATHS)
def test_a_refused_connection_is_provider_unavailable_on_both_paths(
    clients: Callable[[HTTPPath], httpx.Client], path: HTTPPath
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    lm = LM(
        "openai/fake-model",
        api_base=f"http://127.0.0.1:{port}/v1",
        api_key="k",
        cache=False,
        num_retries=0,
        http_client=clients(path),
    )
    with pytest.raises(ProviderUnavailableError) as caught:
        lm("hi")
    assert caught.value.context["cause"] == "ConnectError"


def test_the_direct_path_keeps_its_connection_alive(
    fake_lm: FakeLMServer, clients: Callable[[HTTPPath], httpx.Client]
) -> None:
    client = clients("transport")
    assert isinstance(client, DirectClient) and client.direct_transport is not None
    lm = make_lm(fake_lm, "openai", client)
    lm("one")
    lm("two")
    assert len(fake_lm.requests) == 2
    assert [r["status"] for r in fake_lm.requests] == [200, 200]


def test_a_proxy_in_the_environment_turns_the_direct_path_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with DirectClient() as client:
        assert client.direct_transport is None
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.setenv("NO_PROXY", "*")
    with DirectClient() as client:
        assert client.direct_transport is not None


def test_a_closed_direct_client_refuses_to_send(fake_lm: FakeLMServer) -> None:
    client = http_client("transport")
    client.close()
    with pytest.raises(RuntimeError):
        make_lm(fake_lm, "openai", client, num_retries=0)("hi")


def test_default_headers_changed_between_calls_reach_the_wire_on_both_paths(
    fake_lm: FakeLMServer, clients: Callable[[HTTPPath], httpx.Client]
) -> None:
    # The direct path keeps merged headers: a default header set after a call must
    # still go out with the next one, as it does through client.post.
    seen = []
    for path in HTTP_PATHS:
        client = clients(path)
        lm = make_lm(fake_lm, "openai", client)
        lm("before")
        client.headers["x-team"] = "search"
        fake_lm.clear_requests()
        lm("after")
        headers = {k.lower(): v for k, v in fake_lm.requests[-1]["headers"].items()}
        seen.append(headers.get("x-team"))
    assert seen == ["search", "search"]

"""The fake LM server on its own, through plain httpx: answers, scripting, log, control API."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from dspyq.testing import FakeLMServer
from dspyq.testing.fake_completion import parse_output_fields

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"

# One client for the module: building an httpx client per request costs ~100 ms.
HTTP = httpx.Client(timeout=10)


def chat(server: FakeLMServer, messages: list[dict[str, Any]], **body: Any) -> httpx.Response:
    return HTTP.post(
        f"{server.openai_base}/chat/completions",
        json={"model": "gpt-test", "messages": messages, **body},
        headers={"authorization": "Bearer sk-abc"},
    )


def text_of(response: httpx.Response) -> str:
    return str(response.json()["choices"][0]["message"]["content"])


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


DSPY_CHAT = [
    {
        "role": "system",
        "content": (
            "Your input fields are:\n1. `question` (str):\nYour output fields are:\n"
            "1. `reasoning` (str): \n2. `answer` (int): the number\n"
            "3. `tone` (Literal['calm', 'angry']): \n4. `tags` (list[str]): \n"
            "5. `ok` (bool): \n6. `score` (float):\n"
            "All interactions will be structured in the following way, with the appropriate "
            "values filled in.\n\n[[ ## question ## ]]\n{question}\n\n[[ ## reasoning ## ]]\n"
            "{reasoning}\n\n[[ ## answer ## ]]\n{answer}        # note: the value you produce "
            "must be a single int value\n\n[[ ## completed ## ]]\nIn adhering to this structure, "
            "your objective is: \n        Answer."
        ),
    },
    {
        "role": "user",
        "content": (
            "[[ ## question ## ]]\nHow many legs does a spider have?\n\nRespond with the "
            "corresponding output fields, starting with the field `[[ ## reasoning ## ]]`, then "
            "`[[ ## answer ## ]]` (must be formatted as a valid Python int), and then ending with "
            "the marker for `[[ ## completed ## ]]`."
        ),
    },
]


# --- default answers ---------------------------------------------------------------------------


def test_default_answer_fills_dspy_chat_fields_by_type(fake_lm: FakeLMServer) -> None:
    text = text_of(chat(fake_lm, DSPY_CHAT))
    assert text == (
        "[[ ## reasoning ## ]]\nfake reasoning: How many legs does a spider have?\n\n"
        "[[ ## answer ## ]]\n0\n\n[[ ## tone ## ]]\ncalm\n\n[[ ## tags ## ]]\n[]\n\n"
        "[[ ## ok ## ]]\nTrue\n\n[[ ## score ## ]]\n0.0\n\n[[ ## completed ## ]]"
    )


def test_default_answer_is_json_when_the_prompt_asks_for_it(fake_lm: FakeLMServer) -> None:
    messages = [
        DSPY_CHAT[0],
        {
            "role": "user",
            "content": "[[ ## question ## ]]\nHi\n\nRespond with a JSON object in the following order of fields: `reasoning`, then `answer`.",
        },
    ]
    values = json.loads(text_of(chat(fake_lm, messages)))
    assert values == {
        "reasoning": "fake reasoning: Hi",
        "answer": 0,
        "tone": "calm",
        "tags": [],
        "ok": True,
        "score": 0.0,
    }


def test_default_answer_without_fields_is_plain_text(fake_lm: FakeLMServer) -> None:
    assert text_of(chat(fake_lm, user("Tell me a joke"))) == "fake answer: Tell me a joke"


def test_answers_are_deterministic(fake_lm: FakeLMServer) -> None:
    first = text_of(chat(fake_lm, DSPY_CHAT))
    assert all(text_of(chat(fake_lm, DSPY_CHAT)) == first for _ in range(3))


@pytest.mark.skipif(not REFERENCE.exists(), reason="reference fixtures not present")
@pytest.mark.parametrize(
    "fixture",
    sorted(p.name for p in REFERENCE.glob("dspy-3.4.1-adapter-fixtures*/*.json")),
)
def test_default_answers_cover_every_reference_prompt(fake_lm: FakeLMServer, fixture: str) -> None:
    path = next(REFERENCE.glob(f"dspy-3.4.1-adapter-fixtures*/{fixture}"))
    data = json.loads(path.read_text())
    messages = data["messages"]
    fields = parse_output_fields(messages[0]["content"])
    assert fields, "every DSPy prompt declares output fields"
    text = text_of(chat(fake_lm, messages))
    last_user = messages[-1]["content"]
    if "Respond with a JSON object" in last_user:
        assert list(json.loads(text)) == [f.name for f in fields]
    else:
        for f in fields:
            assert f"[[ ## {f.name} ## ]]" in text
        assert text.endswith("[[ ## completed ## ]]")


def test_pydantic_field_gets_a_value_matching_its_schema(fake_lm: FakeLMServer) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 1}},
        "required": ["name", "age"],
    }
    system = (
        "Your output fields are:\n1. `person` (Person):\nAll interactions will be structured in "
        f"the following way.\n\n[[ ## person ## ]]\n{{person}}        # note: the value you "
        f"produce must adhere to the JSON schema: {json.dumps(schema)}\n"
    )
    text = text_of(chat(fake_lm, [{"role": "system", "content": system}, *user("x")]))
    assert text.startswith("[[ ## person ## ]]\n")
    assert json.loads(text.split("\n")[1]) == {"name": "fake", "age": 1}


# --- scripted answers ---------------------------------------------------------------------------


def test_rules_match_by_regex_first_rule_wins(fake_lm: FakeLMServer) -> None:
    fake_lm.answer("Paris", match=r"capital of France")
    fake_lm.answer("anything else")
    assert text_of(chat(fake_lm, user("What is the capital of France?"))) == "Paris"
    assert text_of(chat(fake_lm, user("What is the capital of Peru?"))) == "anything else"


def test_field_rules_render_in_the_requested_format(fake_lm: FakeLMServer) -> None:
    fake_lm.answer_fields({"answer": 8}, match="spider")
    text = text_of(chat(fake_lm, DSPY_CHAT))
    assert "[[ ## answer ## ]]\n8\n" in text
    assert "[[ ## reasoning ## ]]\nfake reasoning:" in text  # unscripted fields defaulted
    fake_lm.answer_fields({"answer": "Lima"})
    assert (
        text_of(chat(fake_lm, user("no fields here")))
        == "[[ ## answer ## ]]\nLima\n\n[[ ## completed ## ]]"
    )
    as_json = chat(fake_lm, user("x"), response_format={"type": "json_object"})
    assert json.loads(text_of(as_json)) == {"answer": "Lima"}


def test_rules_with_times_expire(fake_lm: FakeLMServer) -> None:
    fake_lm.answer("once", times=1)
    assert text_of(chat(fake_lm, user("a"))) == "once"
    assert text_of(chat(fake_lm, user("a"))) == "fake answer: a"


def test_answers_rotate_across_choices(fake_lm: FakeLMServer) -> None:
    fake_lm.add_rule(answers=["x", "y"])
    choices = chat(fake_lm, user("q"), n=3).json()["choices"]
    assert [c["message"]["content"] for c in choices] == ["x", "y", "x"]
    assert [c["index"] for c in choices] == [0, 1, 2]


# --- protocol details -------------------------------------------------------------------------------


def test_openai_usage_is_counted_by_characters(fake_lm: FakeLMServer) -> None:
    fake_lm.answer("12345678")
    usage = chat(fake_lm, user("abcdefgh"), n=2).json()["usage"]
    assert usage == {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}


def read_sse(response: httpx.Response) -> list[tuple[str | None, str]]:
    events, event = [], None
    for line in response.text.splitlines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            events.append((event, line[6:]))
            event = None
    return events


def test_openai_stream_ends_with_usage_and_done(fake_lm: FakeLMServer) -> None:
    fake_lm.answer("a b c d e")
    response = chat(fake_lm, user("q"), stream=True, stream_options={"include_usage": True})
    assert response.headers["content-type"].startswith("text/event-stream")
    data = [d for _, d in read_sse(response)]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "a b c d e"
    without = [d for _, d in read_sse(chat(fake_lm, user("q"), stream=True))]
    assert all("usage" not in json.loads(d) for d in without[:-1])


def anthropic(server: FakeLMServer, body: dict[str, Any], **headers: str) -> httpx.Response:
    base = {"anthropic-version": "2023-06-01", "x-api-key": "ak-1"}
    return HTTP.post(f"{server.anthropic_base}/v1/messages", json=body, headers={**base, **headers})


def test_anthropic_messages_and_stream_events(fake_lm: FakeLMServer) -> None:
    fake_lm.answer("hello there friend")
    body = {"model": "claude-x", "max_tokens": 10, "system": "sys", "messages": user("hi")}
    message = anthropic(fake_lm, body).json()
    assert message["type"] == "message"
    assert message["content"] == [{"type": "text", "text": "hello there friend"}]
    assert message["usage"] == {"input_tokens": 2, "output_tokens": 5}
    events = read_sse(anthropic(fake_lm, {**body, "stream": True}))
    kinds = [e for e, _ in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_delta" in kinds and "message_delta" in kinds
    deltas = [json.loads(d)["delta"]["text"] for e, d in events if e == "content_block_delta"]
    assert "".join(deltas) == "hello there friend"


def test_anthropic_protocol_violations_are_400(fake_lm: FakeLMServer) -> None:
    good = {"model": "claude-x", "max_tokens": 10, "messages": user("hi")}
    no_version = HTTP.post(f"{fake_lm.anthropic_base}/v1/messages", json=good)
    assert no_version.status_code == 400
    assert anthropic(fake_lm, {**good, "max_tokens": None}).status_code == 400
    system_role = {**good, "messages": [{"role": "system", "content": "s"}, *user("hi")]}
    response = anthropic(fake_lm, system_role)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_models_endpoint_lists_configured_models() -> None:
    with FakeLMServer(models=["m1", "m2"]) as server:
        data = HTTP.get(f"{server.openai_base}/models").json()
    assert [m["id"] for m in data["data"]] == ["m1", "m2"]


# --- failures, latency and rate limits ---------------------------------------------------------------


def test_rate_limit_every_nth_request_with_retry_after(fake_lm: FakeLMServer) -> None:
    fake_lm.configure(rate_limit_every=3, retry_after=2)
    statuses = [chat(fake_lm, user("q")) for _ in range(6)]
    assert [r.status_code for r in statuses] == [200, 200, 429, 200, 200, 429]
    assert statuses[2].headers["retry-after"] == "2"
    assert statuses[2].json()["error"]["code"] == "rate_limit_exceeded"


def test_scripted_failures_come_in_order(fake_lm: FakeLMServer) -> None:
    fake_lm.fail_next(2, 503)
    fake_lm.rate_limit_next(1, retry_after=0.5)
    codes = [chat(fake_lm, user("q")) for _ in range(4)]
    assert [r.status_code for r in codes] == [503, 503, 429, 200]
    assert codes[2].headers["retry-after"] == "0.5"
    outcomes = [r["outcome"] for r in fake_lm.requests]
    assert outcomes == ["failure:503", "failure:503", "failure:429", "answer"]


def test_error_rate_is_seeded_and_reproducible() -> None:
    def run() -> list[int]:
        with FakeLMServer(error_rate=0.5, seed=3) as server:
            return [chat(server, user("q")).status_code for _ in range(12)]

    first = run()
    assert first == run()
    assert 500 in first and 200 in first


def test_latency_delays_answers() -> None:
    with FakeLMServer(latency=0.2) as server:
        start = time.perf_counter()
        chat(server, user("q"))
        assert time.perf_counter() - start >= 0.2


def test_malformed_and_truncated_bodies(fake_lm: FakeLMServer) -> None:
    fake_lm.fail_next(1, kind="malformed")
    fake_lm.fail_next(1, kind="truncated")
    for _ in range(2):
        response = chat(fake_lm, user("q"))
        assert response.status_code == 200
        with pytest.raises(ValueError):
            response.json()


def test_required_key_gives_401_without_it(fake_lm: FakeLMServer) -> None:
    fake_lm.configure(api_key="sk-abc")
    assert chat(fake_lm, user("q")).status_code == 200
    fake_lm.configure(api_key="sk-other")
    response = chat(fake_lm, user("q"))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


# --- request log and HTTP control -------------------------------------------------------------------


def test_request_log_redacts_keys(fake_lm: FakeLMServer) -> None:
    chat(fake_lm, user("logged"))
    anthropic(fake_lm, {"model": "c", "max_tokens": 5, "messages": user("also")})
    HTTP.post(
        f"{fake_lm.openai_base}/chat/completions", json={"model": "m", "messages": user("nokey")}
    )
    log = fake_lm.requests
    assert [e["body"]["messages"][0]["content"] for e in log] == ["logged", "also", "nokey"]
    assert log[0]["headers"]["authorization"] == "REDACTED"
    assert log[1]["headers"]["x-api-key"] == "REDACTED"
    assert [e["had_key"] for e in log] == [True, True, False]
    assert "sk-abc" not in json.dumps(log) and "ak-1" not in json.dumps(log)
    assert [e["protocol"] for e in log] == ["openai", "anthropic", "openai"]


def test_http_control_endpoints(fake_lm: FakeLMServer) -> None:
    base = fake_lm.url
    chat(fake_lm, user("first"))
    assert len(HTTP.get(f"{base}/_fake/requests").json()) == 1
    assert HTTP.delete(f"{base}/_fake/requests").status_code == 200
    assert HTTP.get(f"{base}/_fake/requests").json() == []

    config = HTTP.post(
        f"{base}/_fake/config",
        json={"latency": 0.0, "rules": [{"match": "ping", "answer": "pong"}]},
    ).json()
    assert config["rules"][0]["answer"] == "pong"
    assert text_of(chat(fake_lm, user("ping"))) == "pong"

    script = {
        "failures": [{"kind": "status", "status": 502, "count": 1}],
        "rules": [{"answer": "late"}],
    }
    assert HTTP.post(f"{base}/_fake/script", json=script).status_code == 200
    assert chat(fake_lm, user("zzz")).status_code == 502
    assert text_of(chat(fake_lm, user("zzz"))) == "late"

    assert HTTP.post(f"{base}/_fake/config", json={"latency": "slow"}).status_code == 422
    assert (
        HTTP.post(f"{base}/_fake/script", json={"failures": [{"kind": "nope"}]}).status_code == 422
    )

    HTTP.post(f"{base}/_fake/reset")
    state = HTTP.get(f"{base}/_fake/config").json()
    assert state["rules"] == [] and state["failures"] == [] and state["requests_seen"] == 0
    assert text_of(chat(fake_lm, user("ping"))) == "fake answer: ping"


def test_script_file_preloads_rules_and_config(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps({"rate_limit_every": 2, "rules": [{"match": "hi", "answer": "hello"}]})
    )
    with FakeLMServer(script=script) as server:
        assert text_of(chat(server, user("hi"))) == "hello"
        assert chat(server, user("hi")).status_code == 429


def test_fixture_gives_a_fresh_server(fake_lm: FakeLMServer) -> None:
    assert fake_lm.requests == []
    assert fake_lm.openai_base == f"{fake_lm.url}/v1"
    assert fake_lm.url.startswith("http://127.0.0.1:")


def test_server_restarts_quickly() -> None:
    start = time.perf_counter()
    for _ in range(5):
        with FakeLMServer() as server:
            assert HTTP.get(f"{server.url}/_fake/health").json() == {"ok": True}
    assert time.perf_counter() - start < 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_runs_in_the_foreground_of_another_process(tmp_path: Path) -> None:
    port = free_port()
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"rules": [{"answer": "from the script"}]}))
    code = (
        "from dspyq.testing.fake_lm import serve; "
        f"serve(port={port}, script={str(script)!r}, log_level='warning')"
    )
    process = subprocess.Popen([sys.executable, "-c", code])
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                HTTP.get(f"{base}/_fake/health", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        response = HTTP.post(
            f"{base}/v1/chat/completions", json={"model": "m", "messages": user("hi")}
        )
        assert response.json()["choices"][0]["message"]["content"] == "from the script"
        assert len(HTTP.get(f"{base}/_fake/requests").json()) == 1
    finally:
        process.terminate()
        process.wait(timeout=10)

"""The official ``openai`` and ``anthropic`` SDKs against the fake server, mode by mode.

Each case scripts one behaviour of the fake and calls it the way an application would;
the SDK must parse the answer (or raise its own documented error type for it), which
is what "behaves like the real provider" means for a client.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from dspyq.testing import FakeLMServer

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

HI = [{"role": "user", "content": "hi there"}]
LONG = "word " * 200
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
    "required": ["city", "days"],
}
OPENAI_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA},
}
ANTHROPIC_TOOL = {"name": "get_weather", "input_schema": WEATHER_SCHEMA}
RESPONSES_TOOL = {"type": "function", "name": "get_weather", "parameters": WEATHER_SCHEMA}
CALL = [{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}]


class Weather(BaseModel):
    city: str
    days: int


def oai(server: FakeLMServer, **options: Any) -> Any:
    return openai.OpenAI(base_url=server.openai_base, api_key="sk-test", max_retries=0, **options)


def ant(server: FakeLMServer, **options: Any) -> Any:
    return anthropic.Anthropic(
        base_url=server.anthropic_base, api_key="ak-test", max_retries=0, **options
    )


def chat(server: FakeLMServer, **body: Any) -> Any:
    return oai(server).chat.completions.create(**{"model": "fake-model", "messages": HI, **body})


def message(server: FakeLMServer, **body: Any) -> Any:
    return ant(server).messages.create(
        **{"model": "claude-fake", "max_tokens": 100, "messages": HI, **body}
    )


def raises(error: type[BaseException], call: Callable[[], Any]) -> Any:
    with pytest.raises(error) as caught:
        call()
    return caught.value


# --- OpenAI chat completions ------------------------------------------------------------------


def openai_plain(s: FakeLMServer) -> None:
    s.answer("hello")
    completion = chat(s)
    assert completion.choices[0].message.content == "hello"
    assert completion.choices[0].finish_reason == "stop" and completion.usage.total_tokens > 0


def openai_n_choices(s: FakeLMServer) -> None:
    s.add_rule(answers=["a", "b", "c"])
    assert [c.message.content for c in chat(s, n=3).choices] == ["a", "b", "c"]


def openai_stream_raw(s: FakeLMServer) -> None:
    s.answer("one two three four")
    chunks = list(chat(s, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four" and chunks[-1].usage.completion_tokens > 0


def openai_stream_helper(s: FakeLMServer) -> None:
    s.answer("one two three")
    with oai(s).chat.completions.stream(model="fake-model", messages=HI) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "one two three"


def openai_max_tokens(s: FakeLMServer) -> None:
    s.answer(LONG)
    choice = chat(s, max_tokens=5).choices[0]
    assert choice.finish_reason == "length" and len(choice.message.content) == 20


def openai_max_completion_tokens_stream(s: FakeLMServer) -> None:
    s.answer(LONG)
    chunks = list(chat(s, max_completion_tokens=5, stream=True))
    assert chunks[-1].choices[0].finish_reason == "length"


def openai_tool_calls(s: FakeLMServer) -> None:
    s.add_rule(tool_calls=CALL)
    choice = chat(s, tools=[OPENAI_TOOL]).choices[0]
    call = choice.message.tool_calls[0]
    assert choice.finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "days": 2}


def openai_forced_tool_choice(s: FakeLMServer) -> None:
    forced = {"type": "function", "function": {"name": "get_weather"}}
    call = chat(s, tools=[OPENAI_TOOL], tool_choice=forced).choices[0].message.tool_calls[0]
    assert json.loads(call.function.arguments) == {"city": "fake", "days": 1}


def openai_stream_tool_calls(s: FakeLMServer) -> None:
    s.add_rule(tool_calls=CALL)
    with oai(s).chat.completions.stream(
        model="fake-model", messages=HI, tools=[OPENAI_TOOL]
    ) as stream:
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert json.loads(call.function.arguments)["city"] == "Paris"


def openai_parse_schema(s: FakeLMServer) -> None:
    parsed = oai(s).chat.completions.parse(model="fake-model", messages=HI, response_format=Weather)
    assert parsed.choices[0].message.parsed == Weather(city="fake", days=0)


def openai_empty_messages(s: FakeLMServer) -> None:
    error = raises(openai.BadRequestError, lambda: chat(s, messages=[]))
    assert error.code == "empty_array" and error.param == "messages"


def openai_bad_temperature(s: FakeLMServer) -> None:
    error = raises(openai.BadRequestError, lambda: chat(s, temperature=3))
    assert error.code == "decimal_above_max_value" and error.param == "temperature"


def openai_unknown_model(s: FakeLMServer) -> None:
    s.configure(models=["fake-model"])
    error = raises(openai.NotFoundError, lambda: chat(s, model="gpt-nope"))
    assert error.code == "model_not_found"


def openai_unauthorized(s: FakeLMServer) -> None:
    s.configure(api_key="sk-other")
    assert raises(openai.AuthenticationError, lambda: chat(s)).code == "invalid_api_key"


def openai_forbidden(s: FakeLMServer) -> None:
    s.fail_next(1, 403, code="unsupported_country_region_territory")
    error = raises(openai.PermissionDeniedError, lambda: chat(s))
    assert error.code == "unsupported_country_region_territory"


def openai_rate_limited(s: FakeLMServer) -> None:
    s.fail_next(1, 429, retry_after=1, retry_after_ms=250)
    error = raises(openai.RateLimitError, lambda: chat(s))
    assert error.code == "rate_limit_exceeded" and error.response.headers["retry-after-ms"] == "250"


def openai_insufficient_quota(s: FakeLMServer) -> None:
    s.fail_next(1, kind="insufficient_quota")
    error = raises(openai.RateLimitError, lambda: chat(s))
    assert error.code == "insufficient_quota" and error.type == "insufficient_quota"
    assert "retry-after" not in error.response.headers


def openai_server_error(s: FakeLMServer) -> None:
    s.fail_next(1, 503)
    raises(openai.InternalServerError, lambda: chat(s))


def openai_context_length(s: FakeLMServer) -> None:
    s.configure(max_context_tokens=1)
    assert raises(openai.BadRequestError, lambda: chat(s)).code == "context_length_exceeded"


def openai_headers(s: FakeLMServer) -> None:
    s.configure(ratelimit_requests=10, ratelimit_window=30)
    raw = oai(s).chat.completions.with_raw_response.create(model="fake-model", messages=HI)
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.headers["x-ratelimit-remaining-requests"] == "9"
    assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
    assert raw.parse()._request_id == raw.headers["x-request-id"]


def openai_ratelimit_window(s: FakeLMServer) -> None:
    s.configure(ratelimit_requests=1, ratelimit_window=30)
    chat(s)
    error = raises(openai.RateLimitError, lambda: chat(s))
    assert error.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert 25_000 < int(error.response.headers["retry-after-ms"]) <= 30_000


def openai_connection_reset(s: FakeLMServer) -> None:
    s.fail_next(1, kind="reset")
    raises(openai.APIConnectionError, lambda: chat(s))


def openai_stream_reset(s: FakeLMServer) -> None:
    s.answer(LONG)
    s.fail_next(1, kind="reset")
    raises(openai.APIConnectionError, lambda: list(chat(s, stream=True)))


def openai_slow_first_byte(s: FakeLMServer) -> None:
    s.fail_next(1, kind="slow_first_byte", delay=2.0)
    client = oai(s, timeout=0.3)
    raises(openai.APITimeoutError, lambda: client.chat.completions.create(model="m", messages=HI))
    s.fail_next(1, kind="slow_first_byte", delay=0.2)
    assert chat(s).choices[0].message.content


def openai_truncated_stream(s: FakeLMServer) -> None:
    s.answer("one two three four five six")
    s.fail_next(1, kind="truncated")
    chunks = list(chat(s, stream=True))
    assert all(c.choices[0].finish_reason is None for c in chunks)
    assert 0 < len("".join(c.choices[0].delta.content or "" for c in chunks)) < 27


def openai_stream_error(s: FakeLMServer) -> None:
    s.fail_next(1, kind="stream_error")
    raises(openai.APIError, lambda: list(chat(s, stream=True)))


def openai_models(s: FakeLMServer) -> None:
    s.configure(models=["m1", "m2"])
    assert [m.id for m in oai(s).models.list()] == ["m1", "m2"]


# --- OpenAI Responses API -----------------------------------------------------------------------


def responses_create(s: FakeLMServer) -> None:
    s.answer("a response")
    response = oai(s).responses.create(model="fake-model", input="hi", instructions="be brief")
    assert response.output_text == "a response" and response.status == "completed"
    assert response.usage.total_tokens > 0


def responses_stream_events(s: FakeLMServer) -> None:
    s.answer("streamed answer here")
    events = list(oai(s).responses.create(model="fake-model", input="hi", stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "streamed answer here"


def responses_stream_helper(s: FakeLMServer) -> None:
    s.answer("helper answer")
    with oai(s).responses.stream(model="fake-model", input=HI) as stream:
        final = stream.get_final_response()
    assert final.output_text == "helper answer"


def responses_tool_call(s: FakeLMServer) -> None:
    s.add_rule(tool_calls=CALL)
    response = oai(s).responses.create(model="fake-model", input="hi", tools=[RESPONSES_TOOL])
    item = response.output[0]
    assert item.type == "function_call" and json.loads(item.arguments)["days"] == 2


def responses_max_output_tokens(s: FakeLMServer) -> None:
    s.answer(LONG)
    response = oai(s).responses.create(model="fake-model", input="hi", max_output_tokens=16)
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"


def responses_truncated_stream(s: FakeLMServer) -> None:
    s.answer("one two three four five six")
    s.fail_next(1, kind="truncated")
    events = list(oai(s).responses.create(model="fake-model", input="hi", stream=True))
    assert events[-1].type == "response.output_text.delta"


def responses_stream_error(s: FakeLMServer) -> None:
    s.fail_next(1, kind="stream_error")
    events = list(oai(s).responses.create(model="fake-model", input="hi", stream=True))
    assert events[-1].type == "error" and events[-1].code == "server_error"


def responses_insufficient_quota(s: FakeLMServer) -> None:
    s.fail_next(1, kind="insufficient_quota")
    error = raises(openai.RateLimitError, lambda: oai(s).responses.create(model="m", input="hi"))
    assert error.code == "insufficient_quota"


def responses_missing_input(s: FakeLMServer) -> None:
    error = raises(openai.BadRequestError, lambda: oai(s).responses.create(model="m", input=[]))
    assert error.param == "input"


# --- Anthropic messages -------------------------------------------------------------------------


def anthropic_plain(s: FakeLMServer) -> None:
    s.answer("bonjour")
    reply = message(s, system="be brief")
    assert reply.content[0].text == "bonjour" and reply.stop_reason == "end_turn"


def anthropic_stream_helper(s: FakeLMServer) -> None:
    s.answer("one two three")
    with ant(s).messages.stream(model="c", max_tokens=100, messages=HI) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "one two three" and final.usage.output_tokens > 0


def anthropic_max_tokens(s: FakeLMServer) -> None:
    s.answer(LONG)
    reply = message(s, max_tokens=5)
    assert reply.stop_reason == "max_tokens" and len(reply.content[0].text) == 20


def anthropic_stream_max_tokens(s: FakeLMServer) -> None:
    s.answer(LONG)
    with ant(s).messages.stream(model="c", max_tokens=5, messages=HI) as stream:
        assert stream.get_final_message().stop_reason == "max_tokens"


def anthropic_tool_use(s: FakeLMServer) -> None:
    s.add_rule(answer="Let me check.", tool_calls=CALL)
    reply = message(s, tools=[ANTHROPIC_TOOL])
    assert reply.stop_reason == "tool_use" and reply.content[0].text == "Let me check."
    assert reply.content[1].type == "tool_use" and reply.content[1].input["city"] == "Paris"


def anthropic_forced_tool(s: FakeLMServer) -> None:
    reply = message(s, tools=[ANTHROPIC_TOOL], tool_choice={"type": "tool", "name": "get_weather"})
    assert reply.content[0].input == {"city": "fake", "days": 1}


def anthropic_stream_tool_use(s: FakeLMServer) -> None:
    s.add_rule(tool_calls=CALL)
    with ant(s).messages.stream(
        model="c", max_tokens=100, messages=HI, tools=[ANTHROPIC_TOOL]
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].input == {"city": "Paris", "days": 2}


def anthropic_bad_temperature(s: FakeLMServer) -> None:
    error = raises(anthropic.BadRequestError, lambda: message(s, extra_body={"temperature": 1.5}))
    assert "temperature" in error.message


def anthropic_empty_messages(s: FakeLMServer) -> None:
    raises(anthropic.BadRequestError, lambda: message(s, messages=[]))


def anthropic_unknown_model(s: FakeLMServer) -> None:
    s.configure(models=["claude-fake"])
    raises(anthropic.NotFoundError, lambda: message(s, model="claude-nope"))


def anthropic_unauthorized(s: FakeLMServer) -> None:
    s.configure(api_key="ak-other")
    raises(anthropic.AuthenticationError, lambda: message(s))


def anthropic_forbidden(s: FakeLMServer) -> None:
    s.fail_next(1, 403)
    raises(anthropic.PermissionDeniedError, lambda: message(s))


def anthropic_rate_limited(s: FakeLMServer) -> None:
    s.fail_next(1, 429, retry_after=3)
    error = raises(anthropic.RateLimitError, lambda: message(s))
    assert error.response.headers["retry-after"] == "3"


def anthropic_overloaded(s: FakeLMServer) -> None:
    s.fail_next(1, 529)
    raises(anthropic.InternalServerError, lambda: message(s))


def anthropic_low_credit(s: FakeLMServer) -> None:
    s.fail_next(1, kind="insufficient_quota")
    assert "credit balance" in raises(anthropic.BadRequestError, lambda: message(s)).message


def anthropic_headers(s: FakeLMServer) -> None:
    s.configure(ratelimit_tokens=1000)
    raw = ant(s).messages.with_raw_response.create(model="c", max_tokens=10, messages=HI)
    assert raw.headers["request-id"].startswith("req_")
    assert int(raw.headers["anthropic-ratelimit-tokens-remaining"]) < 1000
    assert raw.headers["anthropic-ratelimit-requests-reset"].endswith("Z")
    assert raw.parse()._request_id == raw.headers["request-id"]


def anthropic_stream_error(s: FakeLMServer) -> None:
    s.fail_next(1, kind="stream_error")
    stream = ant(s).messages.stream(model="c", max_tokens=100, messages=HI)
    raises(anthropic.APIStatusError, lambda: stream.__enter__().get_final_message())


def anthropic_connection_reset(s: FakeLMServer) -> None:
    s.fail_next(1, kind="reset")
    raises(anthropic.APIConnectionError, lambda: message(s))


def anthropic_slow_first_byte(s: FakeLMServer) -> None:
    s.fail_next(1, kind="slow_first_byte", delay=2.0)
    raises(
        anthropic.APITimeoutError,
        lambda: ant(s, timeout=0.3).messages.create(model="c", max_tokens=10, messages=HI),
    )


def anthropic_stream_reset(s: FakeLMServer) -> None:
    s.answer(LONG)
    s.fail_next(1, kind="reset")
    raises(anthropic.APIConnectionError, lambda: list(message(s, stream=True)))


def anthropic_truncated_stream(s: FakeLMServer) -> None:
    s.answer("one two three four five six")
    s.fail_next(1, kind="truncated")
    events = list(message(s, stream=True))
    assert events[0].type == "message_start" and events[-1].type == "content_block_delta"


CASES: dict[str, Callable[[FakeLMServer], None]] = {
    name: case
    for name, case in dict(globals()).items()
    if name.startswith(("openai_", "responses_", "anthropic_")) and callable(case)
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_official_sdks_parse_the_fake(fake_lm: FakeLMServer, case: str) -> None:
    CASES[case](fake_lm)


def test_the_matrix_is_broad() -> None:
    assert len(CASES) >= 28

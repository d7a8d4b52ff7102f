"""Self-repair of malformed outputs: further LM calls that show the model its parse error."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from dspyq.adapters import ChatAdapter
from dspyq.core import observe
from dspyq.core.context import context
from dspyq.core.predict import Predict
from dspyq.errors import AdapterParseError, ConfigurationError
from dspyq.events import Event
from dspyq.lm import LM
from dspyq.settings import reload_settings
from dspyq.testing.fake_lm import FakeLMServer

GARBAGE = "I would rather not use any format today."


@pytest.fixture
def lm(fake_lm: FakeLMServer) -> LM:
    return LM("openai/gpt-4o-mini", api_base=fake_lm.openai_base, api_key="test", cache=False)


@pytest.fixture
def events() -> Iterator[list[Event]]:
    with observe.capture() as captured:
        yield captured


def retries(events: list[Event]) -> list[dict[str, Any]]:
    return [e.data for e in events if e.event_type == "parse_retry"]


def sent(server: FakeLMServer) -> list[list[dict[str, Any]]]:
    return [r["body"]["messages"] for r in server.requests]


def test_malformed_reply_is_repaired_after_the_json_fallback_fails(
    fake_lm: FakeLMServer, lm: LM, events: list[Event]
) -> None:
    fake_lm.answer(GARBAGE, times=2)  # the chat call and its JSON fallback
    fake_lm.answer_fields({"answer": "Paris"})

    with context(lm=lm, max_parse_retries=2):
        prediction = Predict("question -> answer")(question="Capital of France?")

    assert prediction.answer == "Paris"
    _chat, json_fallback, repair = sent(fake_lm)
    # The repair continues the JSON conversation: the bad reply, then the error and format.
    assert repair[: len(json_fallback)] == json_fallback
    assert repair[len(json_fallback)] == {"role": "assistant", "content": GARBAGE}
    follow_up = repair[-1]
    assert follow_up["role"] == "user"
    assert "could not be parsed" in follow_up["content"]
    assert "LM response cannot be serialized to a JSON object." in follow_up["content"]
    assert (
        "Respond with a JSON object in the following order of fields: `answer`."
        in (follow_up["content"])
    )
    assert fake_lm.requests[2]["body"].get("response_format") is not None  # still JSON mode
    assert retries(events) == [
        {
            "attempt": 1,
            "max_parse_retries": 2,
            "adapter": "JSONAdapter",
            "parse_error": "LM response cannot be serialized to a JSON object. "
            "Expected output fields: [answer].",
            "outcome": "parsed",
        }
    ]


def test_retries_stop_at_the_limit_and_raise_the_last_parse_error(
    fake_lm: FakeLMServer, lm: LM, events: list[Event]
) -> None:
    fake_lm.answer(GARBAGE)

    with context(lm=lm, max_parse_retries=2), pytest.raises(AdapterParseError) as caught:
        Predict("question -> answer")(question="q")

    assert len(fake_lm.requests) == 4  # chat, JSON, two repairs
    assert caught.value.context["parse_retries"] == 2
    assert [(r["attempt"], r["outcome"]) for r in retries(events)] == [
        (1, "failed"),
        (2, "failed"),
    ]
    # Each repair shows the whole exchange so far: two bad replies before the last request.
    last = sent(fake_lm)[-1]
    assert [m["content"] for m in last if m["role"] == "assistant"] == [GARBAGE, GARBAGE]


def test_by_default_a_failure_is_exactly_dspys(
    fake_lm: FakeLMServer, lm: LM, events: list[Event]
) -> None:
    fake_lm.answer(GARBAGE)
    with context(lm=lm), pytest.raises(AdapterParseError) as caught:
        Predict("question -> answer")(question="q")
    assert len(fake_lm.requests) == 2
    assert "parse_retries" not in caught.value.context
    assert retries(events) == []


def test_the_setting_turns_repair_on(
    fake_lm: FakeLMServer, lm: LM, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_lm.answer(GARBAGE, times=2)
    fake_lm.answer_fields({"answer": "ok"})
    monkeypatch.setenv("DSPYQ_MAX_PARSE_RETRIES", "1")
    reload_settings()
    try:
        with context(lm=lm):
            assert Predict("question -> answer")(question="q").answer == "ok"
    finally:
        monkeypatch.delenv("DSPYQ_MAX_PARSE_RETRIES")
        reload_settings()
    assert len(fake_lm.requests) == 3


def test_chat_adapter_without_fallback_repairs_in_its_own_format(
    fake_lm: FakeLMServer, lm: LM
) -> None:
    fake_lm.answer("[[ ## answr ## ]]\nParis", times=1)
    fake_lm.answer_fields({"answer": "Paris"})

    adapter = ChatAdapter(use_json_adapter_fallback=False)
    with context(lm=lm, adapter=adapter, max_parse_retries=1):
        assert Predict("question -> answer")(question="q").answer == "Paris"

    follow_up = sent(fake_lm)[1][-1]["content"]
    assert "Output fields found in your response: []." in follow_up
    assert "ending with the marker for `[[ ## completed ## ]]`" in follow_up
    assert "response_format" not in fake_lm.requests[1]["body"]


def test_async_calls_repair_too(fake_lm: FakeLMServer, lm: LM, events: list[Event]) -> None:
    fake_lm.answer(GARBAGE, times=3)
    fake_lm.answer_fields({"answer": "late"})

    async def run() -> Any:
        with context(lm=lm, max_parse_retries=3):
            return await Predict("question -> answer").acall(question="q")

    assert asyncio.run(run()).answer == "late"
    assert len(fake_lm.requests) == 4
    assert [r["outcome"] for r in retries(events)] == ["failed", "parsed"]


@pytest.mark.parametrize("bad", [-1, "2", 1.5])
def test_a_bad_limit_is_a_configuration_error(fake_lm: FakeLMServer, lm: LM, bad: object) -> None:
    fake_lm.answer(GARBAGE)
    with context(lm=lm, max_parse_retries=bad), pytest.raises(ConfigurationError):
        Predict("question -> answer")(question="q")

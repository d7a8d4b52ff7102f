"""An LM call inside ``context(send_stream=...)`` streams its text and returns as usual."""

from __future__ import annotations

from dspyq.core.context import context
from dspyq.core.predict import Predict
from dspyq.lm import LM
from dspyq.testing import FakeLMServer

TEXT = "alpha beta gamma delta epsilon zeta eta theta"


def lm_for(server: FakeLMServer, cache: bool = False) -> LM:
    return LM("openai/gpt-4o-mini", api_base=server.openai_base, api_key="k", cache=cache)


def test_a_call_streams_to_the_hook_and_returns_the_whole_response(
    fake_lm: FakeLMServer,
) -> None:
    fake_lm.answer(TEXT)
    lm = lm_for(fake_lm)
    sent: list[tuple[str, str]] = []

    with context(send_stream=lambda text, call_id: sent.append((text, call_id))):
        response = lm.forward(prompt="go")

    assert fake_lm.last_request is not None and fake_lm.last_request["body"]["stream"] is True
    assert len(sent) > 2 and "".join(text for text, _ in sent) == TEXT
    assert len({call_id for _, call_id in sent}) == 1
    assert response.outputs == [TEXT] and response.usage.completion_tokens > 0
    [entry] = lm.history
    assert entry["stream"] is True and entry["outputs"] == [TEXT]


def test_each_call_of_a_program_has_its_own_call_id(fake_lm: FakeLMServer) -> None:
    fake_lm.answer("no markers", times=1)
    fake_lm.answer_fields({"answer": "ok"})
    sent: list[tuple[str, str]] = []

    with context(lm=lm_for(fake_lm), send_stream=lambda t, c: sent.append((t, c))):
        assert Predict("question -> answer")(question="q").answer == "ok"

    assert len({call_id for _, call_id in sent}) == 2  # the chat call and its JSON fallback


def test_several_choices_are_not_streamed(fake_lm: FakeLMServer) -> None:
    fake_lm.answer(TEXT)
    sent: list[str] = []
    with context(send_stream=lambda text, call_id: sent.append(text)):
        outputs = lm_for(fake_lm)(prompt="go", n=2, temperature=1.0)
    assert len(outputs) == 2 and sent == []


def test_a_cached_answer_is_sent_whole(fake_lm: FakeLMServer) -> None:
    fake_lm.answer(TEXT)
    lm = lm_for(fake_lm, cache=True)
    lm(prompt="cached stream question")
    sent: list[str] = []
    with context(send_stream=lambda text, call_id: sent.append(text)):
        assert lm(prompt="cached stream question") == [TEXT]
    assert sent == [TEXT] and len(fake_lm.requests) == 1

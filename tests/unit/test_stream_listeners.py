"""``streamify`` with stream listeners yields what DSPy 3.4.1 yields.

The same program, scripted answers and fake LM server run through ``dspy.streamify``
(whose LM streams through its own client) and ``dspyq.streamify``; the items yielded
(``StreamResponse`` pieces, status lines, the final ``Prediction``) must be equal, in
order. Separately, both listeners are fed the same chunks of generated answers.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from types import SimpleNamespace
from typing import Any

import dspy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dspyq
from dspyq.testing import FakeLMServer

pytestmark = pytest.mark.usefixtures("fresh_configurations")


def chat(**fields: str) -> str:
    body = "".join(f"[[ ## {name} ## ]]\n{value}\n\n" for name, value in fields.items())
    return body + "[[ ## completed ## ]]"


def xml(**fields: str) -> str:
    return "\n".join(f"<{name}>\n{value}\n</{name}>" for name, value in fields.items())


def as_json(**fields: str) -> str:
    return json.dumps(fields)


FORMATS = {"ChatAdapter": chat, "JSONAdapter": as_json, "XMLAdapter": xml}
REASONING = "I think that the answer is clearly forty two, as  the  sum says.\nSee: [1]"
ANSWER = "forty two is the answer"


def shown(item: Any) -> Any:
    """An item as comparable data: a Prediction as its fields, anything else as its repr."""
    if type(item).__name__ == "Prediction":
        return ("Prediction", dict(item))
    return repr(item)


def stream(pkg: Any, server: FakeLMServer, replies: list[str], build: Any, **options: Any) -> Any:
    """``build(pkg)`` gives (program, listeners, call kwargs); everything it yields."""
    server.reset()
    for reply in replies:
        server.answer(reply, times=1)
    lm = pkg.LM("openai/gpt-4o-mini", api_base=server.openai_base, api_key="k", cache=False)
    adapter = options.pop("adapter", None)
    program, listeners, inputs = build(pkg)
    streamed = pkg.streamify(program, stream_listeners=listeners, **options)

    async def consume() -> list[Any]:
        with pkg.context(lm=lm, adapter=getattr(pkg, adapter)() if adapter else None):
            return [shown(item) async for item in streamed(**inputs)]

    if options.get("async_streaming", True):
        return asyncio.run(consume())
    with pkg.context(lm=lm, adapter=getattr(pkg, adapter)() if adapter else None):
        return [shown(item) for item in streamed(**inputs)]


def both(server: FakeLMServer, replies: list[str], build: Any, **options: Any) -> Any:
    theirs = stream(dspy, server, replies, build, **dict(options))
    ours = stream(dspyq, server, replies, build, **dict(options))
    assert ours == theirs
    return ours


def one_predict(pkg: Any) -> Any:
    listeners = [
        pkg.streaming.StreamListener(signature_field_name="answer"),
        pkg.streaming.StreamListener(signature_field_name="reasoning"),
    ]
    return pkg.Predict("question -> reasoning, answer"), listeners, {"question": "q"}


@pytest.mark.parametrize("adapter", sorted(FORMATS))
def test_two_fields_of_one_predictor_stream_as_in_dspy(fake_lm: FakeLMServer, adapter: str) -> None:
    reply = FORMATS[adapter](reasoning=REASONING, answer=ANSWER)
    items = both(fake_lm, [reply], one_predict, adapter=adapter)
    assert items[-1] == ("Prediction", {"reasoning": REASONING, "answer": ANSWER})
    assert len(items) > 4


@pytest.mark.parametrize("include", [True, False])
def test_chain_of_thought_answer_only_sync(fake_lm: FakeLMServer, include: bool) -> None:
    def build(pkg: Any) -> Any:
        listener = pkg.streaming.StreamListener(signature_field_name="answer")
        return pkg.ChainOfThought("question -> answer"), [listener], {"question": "q"}

    items = both(
        fake_lm,
        [chat(reasoning=REASONING, answer=ANSWER)],
        build,
        include_final_prediction_in_output_stream=include,
        async_streaming=False,
    )
    assert ("Prediction" in str(items[-1])) is include
    assert "predict_name='predict'" in items[0]


def two_hops(pkg: Any, allow_reuse: bool) -> Any:
    class Hops(pkg.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.hop = pkg.Predict("question -> note")
            self.final = pkg.Predict("question, note -> answer")

        def forward(self, question: str) -> Any:
            note = self.hop(question=question).note
            note = self.hop(question=f"{question} {note}").note
            return self.final(question=question, note=note)

    program = Hops()
    listener = pkg.streaming.StreamListener(
        signature_field_name="note", predict=program.hop, predict_name="hop",
        allow_reuse=allow_reuse,
    )  # fmt: skip
    return program, [listener], {"question": "q"}


@pytest.mark.parametrize("allow_reuse", [True, False])
def test_a_predictor_called_twice_streams_twice_only_with_allow_reuse(
    fake_lm: FakeLMServer, allow_reuse: bool
) -> None:
    replies = [
        chat(note="the first note is long enough"),
        chat(note="a second note follows here"),
        chat(answer=ANSWER),
    ]
    items = both(fake_lm, replies, lambda pkg: two_hops(pkg, allow_reuse))
    last_chunks = [item for item in items if "is_last_chunk=True" in item]
    assert len(last_chunks) == (2 if allow_reuse else 1)


def test_status_lines_around_a_tool_call(fake_lm: FakeLMServer) -> None:
    def build(pkg: Any) -> Any:
        def lookup(topic: str) -> str:
            """Look a topic up."""
            return f"facts about {topic}"

        class WithTool(pkg.Module):  # type: ignore[misc]
            def __init__(self) -> None:
                super().__init__()
                self.tool = pkg.Tool(lookup)
                self.answer = pkg.Predict("question, facts -> answer")

            def forward(self, question: str) -> Any:
                return self.answer(question=question, facts=self.tool(topic=question))

        listener = pkg.streaming.StreamListener(signature_field_name="answer")
        return WithTool(), [listener], {"question": "q"}

    items = both(fake_lm, [chat(answer=ANSWER)], build)
    assert items[0] == "StatusMessage(message='Calling tool lookup...')"


def test_finding_the_predictor_fails_as_in_dspy() -> None:
    def failure(pkg: Any, field: str, program: Any) -> str:
        listener = pkg.streaming.StreamListener(signature_field_name=field)
        with pytest.raises(Exception) as caught:
            pkg.streamify(program, stream_listeners=[listener])
        return f"{type(caught.value).__name__}: {caught.value}"

    theirs_missing = failure(dspy, "missing", dspy.Predict("q -> a"))
    assert failure(dspyq, "missing", dspyq.Predict("q -> a")) == theirs_missing
    theirs_dup = failure(dspy, "a", _twin(dspy))
    assert failure(dspyq, "a", _twin(dspyq)) == theirs_dup
    assert "not unique" in theirs_dup


def _twin(pkg: Any) -> Any:
    module = pkg.Module()
    module.first, module.second = pkg.Predict("q -> a"), pkg.Predict("q -> a")
    return module


def test_an_adapter_that_cannot_stream_fails_as_in_dspy() -> None:
    messages = []
    for pkg in (dspy, dspyq):
        listener = pkg.streaming.StreamListener(signature_field_name="answer")
        adapter = pkg.TwoStepAdapter(pkg.utils.DummyLM([]))
        with pytest.raises(ValueError) as caught:
            feed(pkg, listener, ["x"], adapter=adapter)
        messages.append(str(caught.value))
    assert messages[1] == messages[0]
    assert messages[0].startswith("Unsupported adapter for streaming: TwoStepAdapter")


def feed(pkg: Any, listener: Any, chunks: list[str], adapter: Any) -> list[str]:
    """Every piece the listener gives for these chunks, then what finalize gives."""
    pieces = []
    with pkg.context(adapter=adapter):
        for chunk in chunks:
            if pkg is dspy:
                event = SimpleNamespace(
                    choices=[SimpleNamespace(delta=SimpleNamespace(content=chunk))]
                )
                piece = listener.receive(event)
            else:
                piece = listener.receive(chunk, adapter)
            if piece is not None:
                pieces.append(repr(piece))
        last = listener.finalize() if pkg is dspy else listener.finalize(adapter)
    return pieces + ([repr(last)] if last is not None else [])


text = st.text(alphabet=st.sampled_from(list("ab xy.,:\n[]#{}<>/\"'")), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    adapter=st.sampled_from(sorted(FORMATS)),
    values=st.tuples(text, text),
    field=st.sampled_from(["reasoning", "answer"]),
    cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=40),
    reuse=st.booleans(),
)
def test_the_listener_cuts_any_chunking_as_dspys(
    adapter: str, values: tuple[str, str], field: str, cuts: list[int], reuse: bool
) -> None:
    reply = FORMATS[adapter](reasoning=values[0].strip() or "r", answer=values[1].strip() or "a")
    reply = reply + reply if reuse else reply
    points = sorted({cut % len(reply) for cut in cuts} - {0})
    chunks = [reply[a:b] for a, b in zip([0, *points], [*points, len(reply)], strict=True)]
    results = []
    for pkg in (dspy, dspyq):
        listener = pkg.streaming.StreamListener(signature_field_name=field, allow_reuse=reuse)
        results.append(feed(pkg, listener, chunks, getattr(pkg, adapter)()))
    assert results[1] == results[0]


@pytest.mark.parametrize("adapter", sorted(FORMATS))
def test_an_async_program_streams_through_acall(fake_lm: FakeLMServer, adapter: str) -> None:
    reply = FORMATS[adapter](reasoning=REASONING, answer=ANSWER)
    items = both(fake_lm, [reply], one_predict, adapter=adapter, is_async_program=True)
    assert sum("is_last_chunk=True" in item for item in items) == 2


@pytest.mark.parametrize("include", [True, False])
@pytest.mark.parametrize("adapter", sorted(FORMATS))
def test_a_cached_answer_streams_nothing_and_yields_the_prediction(
    fake_lm: FakeLMServer, adapter: str, include: bool
) -> None:
    """DSPy streams nothing from its cache; dspyq sends the cached answer whole, which
    the listener must recognise and skip the same way."""

    def run(pkg: Any) -> list[Any]:
        fake_lm.reset()
        fake_lm.answer(FORMATS[adapter](answer=ANSWER))
        lm = pkg.LM("openai/gpt-4o-mini", api_base=fake_lm.openai_base, api_key="k", cache=True)
        question = f"cached streaming {uuid.uuid4().hex}"  # DSPy's disk cache outlives runs
        runs = []
        for _ in range(2):
            listener = pkg.streaming.StreamListener(signature_field_name="answer")
            streamed = pkg.streamify(
                pkg.Predict("question -> answer"),
                stream_listeners=[listener],
                include_final_prediction_in_output_stream=include,
                async_streaming=False,
            )
            with pkg.context(lm=lm, adapter=getattr(pkg, adapter)()):
                runs.append([shown(item) for item in streamed(question=question)])
        return runs

    theirs, ours = run(dspy), run(dspyq)
    assert ours == theirs
    assert ours[1] == [("Prediction", {"answer": ANSWER})]


def test_react_streams_its_answer_and_announces_its_tool(fake_lm: FakeLMServer) -> None:
    def build(pkg: Any) -> Any:
        def lookup(topic: str) -> str:
            """Look a topic up."""
            return f"facts about {topic}"

        listeners = [
            pkg.streaming.StreamListener(signature_field_name="answer"),
            pkg.streaming.StreamListener(signature_field_name="next_thought", allow_reuse=True),
        ]
        return pkg.ReAct("question -> answer", tools=[lookup]), listeners, {"question": "q"}

    replies = [
        chat(next_thought="I should look this up first", next_tool_name="lookup",
             next_tool_args='{"topic": "numbers"}'),
        chat(next_thought="That is enough to answer now", next_tool_name="finish",
             next_tool_args="{}"),
        chat(reasoning=REASONING, answer=ANSWER),
    ]  # fmt: skip
    items = both(fake_lm, replies, build, include_final_prediction_in_output_stream=False)
    assert "StatusMessage(message='Calling tool lookup...')" in items
    assert any("signature_field_name='answer'" in item for item in items)

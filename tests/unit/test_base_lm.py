"""``dspyq.BaseLM`` custom LMs against ``dspy.BaseLM``: the same subclass, the same results."""

from __future__ import annotations

import asyncio
from typing import Any

import dspy
import pytest

import dspyq


def _response(
    content: str | None, tool_calls: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        "model": "echo-1",
    }


def _echo_lm(pkg: Any, tools: bool = False) -> Any:
    class EchoLM(pkg.BaseLM):  # type: ignore[misc, name-defined]
        """Answers with the question it was asked, upper-cased; or calls a tool."""

        supports_function_calling = tools

        def forward(self, prompt: Any = None, messages: Any = None, **kwargs: Any) -> Any:
            self.seen = (messages, kwargs)
            if kwargs.get("tools"):
                call = {"id": "c1", "type": "function",
                        "function": {"name": "search", "arguments": '{"query": "cats"}'}}  # fmt: skip
                return _response(None, [call])
            question = messages[-1]["content"].split("\n")[1]
            return _response(f"[[ ## answer ## ]]\n{question.upper()}\n\n[[ ## completed ## ]]")

        async def aforward(self, prompt: Any = None, messages: Any = None, **kwargs: Any) -> Any:
            return self.forward(prompt, messages, **kwargs)

    return EchoLM(model="echo-1", temperature=0.0)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_custom_lm_runs_predict_like_dspy(asynchronous: bool) -> None:
    results = []
    for pkg in (dspy, dspyq):
        lm = _echo_lm(pkg)
        predict = pkg.Predict("question -> answer")
        with pkg.context(lm=lm):
            call = predict.acall(question="hi there") if asynchronous else None
            result = asyncio.run(call) if call is not None else predict(question="hi there")
        results.append((result.answer, lm.seen, len(lm.history), lm.kwargs))
    assert results[0] == results[1]
    assert results[1][0] == "HI THERE"


def test_outputs_and_flags_match_dspy() -> None:
    ours, theirs = _echo_lm(dspyq), _echo_lm(dspy)
    assert ours(messages=[{"role": "user", "content": "x\nq"}]) == theirs(
        messages=[{"role": "user", "content": "x\nq"}]
    )
    for flag in ("supports_function_calling", "supports_reasoning", "supports_response_schema"):
        assert getattr(dspyq.BaseLM("m"), flag) == getattr(dspy.BaseLM("m"), flag)
    assert dspyq.BaseLM("m").kwargs == dspy.BaseLM("m").kwargs
    with pytest.raises(NotImplementedError):
        dspyq.BaseLM("m")(prompt="hi")


def test_custom_lm_tool_calls_natively_like_dspy() -> None:
    results = []
    for pkg in (dspy, dspyq):

        def search(query: str) -> str:
            """Search."""
            return query

        annotations = {"question": str, "tools": list[pkg.Tool], "calls": pkg.ToolCalls}
        attrs = {"__annotations__": annotations, "question": pkg.InputField(),
                 "tools": pkg.InputField(), "calls": pkg.OutputField()}  # fmt: skip
        sig = type("Plan", (pkg.Signature,), attrs)
        lm = _echo_lm(pkg, tools=True)
        with pkg.context(lm=lm, adapter=pkg.ChatAdapter(use_native_function_calling=True)):
            result = pkg.Predict(sig)(question="q", tools=[pkg.Tool(search)])
        results.append((result.calls.model_dump(), lm.seen[1]["tools"]))
    assert results[0] == results[1]


def test_reasoning_content_fills_reasoning_outputs_like_dspy() -> None:
    results = []
    for pkg in (dspy, dspyq):

        class Thinking(pkg.BaseLM):  # type: ignore[misc, name-defined]
            def forward(self, prompt: Any = None, messages: Any = None, **kwargs: Any) -> Any:
                text = "[[ ## why ## ]]\nwritten\n\n[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]"
                response = _response(text)
                response["choices"][0]["message"]["reasoning_content"] = "thought natively"
                return response

        annotations = {"question": str, "why": pkg.Reasoning, "answer": str}
        attrs = {"__annotations__": annotations, "question": pkg.InputField(),
                 "why": pkg.OutputField(), "answer": pkg.OutputField()}  # fmt: skip
        sig = type("Think", (pkg.Signature,), attrs)
        with pkg.context(lm=Thinking(model="t")):
            result = pkg.Predict(sig)(question="2+2?")
        results.append((type(result.why).__name__, str(result.why), result.answer))
    assert results[0] == results[1]
    assert results[1] == ("Reasoning", "thought natively", "4")


def test_custom_lm_calls_show_in_inspect_history_as_in_dspy(
    capsys: pytest.CaptureFixture[str],
) -> None:
    shown = []
    for pkg in (dspy, dspyq):
        lm = _echo_lm(pkg)
        with pkg.context(lm=lm):
            pkg.Predict("question -> answer")(question="hi there")
        lm.history[-1]["timestamp"] = "now"  # the global history holds the same entry
        capsys.readouterr()
        pkg.inspect_history(1)
        shown.append(capsys.readouterr().out)
    assert shown[1] == shown[0]
    assert "HI THERE" in shown[1]

"""Native tool calling against DSPy 3.4.1, through the fake LM server over real HTTP.

DSPy's side is a ``dspy.BaseLM`` that posts to the same fake server and hands DSPy the
OpenAI SDK's parsed response, so both packages read the very same answer.
"""

from __future__ import annotations

import json
from typing import Any

import dspy
import httpx
import pytest

import dspyq
from dspyq.lm.response_format import normalize_response_format
from dspyq.testing import FakeLMServer

openai = pytest.importorskip("openai")

CALLS = [
    {"name": "search", "arguments": {"query": "cats", "k": 2}},
    {"name": "lookup", "arguments": {"key": "x"}},
]


def search(query: str, k: int = 3) -> str:
    """Search the web."""
    return f"results for {query}"


async def lookup(key: str) -> str:
    """Look a key up."""
    return key.upper()


def _signature(pkg: Any) -> Any:
    annotations = {"question": str, "tools": list[pkg.Tool], "calls": pkg.ToolCalls}
    attrs = {
        "__doc__": "Call the tools the question needs.",
        "__annotations__": annotations,
        "question": pkg.InputField(),
        "tools": pkg.InputField(),
        "calls": pkg.OutputField(),
    }
    return type("Plan", (pkg.Signature,), attrs)


class FakeServerLM(dspy.BaseLM):
    """DSPy's side: the fake server's answer, parsed by the OpenAI SDK."""

    # What dspy.LM says of gpt-4o-mini.
    supports_function_calling = True
    supports_response_schema = True
    supported_params = {"response_format", "tools", "tool_choice", "parallel_tool_calls"}

    def __init__(self, base: str) -> None:
        super().__init__(model="openai/gpt-4o-mini", cache=False)
        self.base = base
        self.sent: list[dict[str, Any]] = []

    def forward(self, prompt: Any = None, messages: Any = None, **kwargs: Any) -> Any:
        body = {"model": "gpt-4o-mini", "messages": messages, **kwargs}
        if isinstance(body.get("response_format"), type):  # DSPy hands a model class
            body["response_format"] = normalize_response_format(body["response_format"])
        self.sent.append(body)
        answer = httpx.post(
            f"{self.base}/chat/completions", json=body, headers={"authorization": "Bearer sk-t"}
        )
        return openai.types.chat.ChatCompletion.model_validate(answer.json())


def _dspy_run(fake_lm: FakeLMServer, adapter: Any, text: str | None = None) -> tuple[Any, Any]:
    lm = FakeServerLM(fake_lm.openai_base)
    with dspy.context(lm=lm, adapter=adapter):
        result = dspy.Predict(_signature(dspy))(
            question="cats?", tools=[dspy.Tool(search), dspy.Tool(lookup)]
        )
    return result, lm.sent[-1]


def _dspyq_run(fake_lm: FakeLMServer, model: str, adapter: Any) -> tuple[Any, Any]:
    base = fake_lm.openai_base if model.startswith("openai/") else fake_lm.anthropic_base
    lm = dspyq.LM(model, api_base=base, api_key="sk-t", cache=False)
    with dspyq.context(lm=lm, adapter=adapter):
        result = dspyq.Predict(_signature(dspyq))(
            question="cats?", tools=[dspyq.Tool(search), dspyq.Tool(lookup)]
        )
    return result, fake_lm.requests[-1]["body"]


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku"])
def test_native_tool_calls_match_dspy(fake_lm: FakeLMServer, model: str) -> None:
    fake_lm.add_rule(tool_calls=CALLS)
    theirs, their_body = _dspy_run(fake_lm, dspy.ChatAdapter(use_native_function_calling=True))
    ours, body = _dspyq_run(fake_lm, model, dspyq.ChatAdapter(use_native_function_calling=True))
    assert ours.calls.model_dump() == theirs.calls.model_dump()
    assert [call.name for call in ours.calls.tool_calls] == ["search", "lookup"]
    assert ours.calls.tool_calls[0].execute([dspyq.Tool(search)]) == "results for cats"
    system = body.get("system") or body["messages"][0]["content"]
    assert system == their_body["messages"][0]["content"]  # tools and calls left out of it
    users = [m for m in body["messages"] if m["role"] == "user"]
    assert users[-1]["content"] == their_body["messages"][-1]["content"]
    if model.startswith("openai/"):
        assert body["tools"] == their_body["tools"]
    else:  # the same tools in Anthropic's shape
        assert body["tools"][0] == {
            "name": "search",
            "input_schema": their_body["tools"][0]["function"]["parameters"],
            "description": "Search the web.",
        }


def test_json_adapter_calls_natively_by_default_like_dspy(fake_lm: FakeLMServer) -> None:
    fake_lm.add_rule(tool_calls=CALLS[:1])
    theirs, their_body = _dspy_run(fake_lm, dspy.JSONAdapter())
    ours, body = _dspyq_run(fake_lm, "openai/gpt-4o-mini", dspyq.JSONAdapter())
    assert ours.calls.model_dump() == theirs.calls.model_dump()
    assert body["tools"] == their_body["tools"]
    assert body["messages"] == their_body["messages"]
    assert body["response_format"] == their_body["response_format"]


def test_json_adapter_without_native_calls_asks_for_json_mode_like_dspy(
    fake_lm: FakeLMServer,
) -> None:
    text = json.dumps({"calls": {"tool_calls": [{"name": "search", "args": {"query": "x"}}]}})
    fake_lm.add_rule(answer=text)
    adapter = {"use_native_function_calling": False}
    theirs, their_body = _dspy_run(fake_lm, dspy.JSONAdapter(**adapter))
    ours, body = _dspyq_run(fake_lm, "openai/gpt-4o-mini", dspyq.JSONAdapter(**adapter))
    assert body["response_format"] == their_body["response_format"] == {"type": "json_object"}
    assert body["messages"] == their_body["messages"]
    assert ours.calls.model_dump() == theirs.calls.model_dump()


def test_without_the_flag_calls_are_read_from_text_like_dspy(fake_lm: FakeLMServer) -> None:
    text = json.dumps({"tool_calls": [{"name": "search", "args": {"query": "dogs"}}]})
    fake_lm.add_rule(answer=f"[[ ## calls ## ]]\n{text}\n\n[[ ## completed ## ]]")
    theirs, their_body = _dspy_run(fake_lm, dspy.ChatAdapter())
    ours, body = _dspyq_run(fake_lm, "openai/gpt-4o-mini", dspyq.ChatAdapter())
    assert ours.calls.model_dump() == theirs.calls.model_dump()
    assert "tools" not in body and "tools" not in their_body
    assert body["messages"] == their_body["messages"]


def test_async_tool_runs_through_acall() -> None:
    import asyncio

    tool = dspyq.Tool(lookup)
    assert asyncio.run(tool.acall(key="ab")) == "AB"
    assert (
        tool.format_as_litellm_function_call()
        == dspy.Tool(lookup).format_as_litellm_function_call()
    )


class McpTool:
    """The shape of ``mcp.types.Tool`` (no mcp package needed)."""

    def __init__(self) -> None:
        self.name = "add"
        self.description = "Add two numbers."
        self.inputSchema = {
            "type": "object",
            "properties": {
                "a": {"type": "integer", "description": "first"},
                "b": {"$ref": "#/$defs/Num"},
            },
            "required": ["a"],
            "$defs": {"Num": {"type": "number"}},
        }


class TextPart:
    type = "text"

    def __init__(self, text: str) -> None:
        self.text = text


class CallResult:
    def __init__(self, text: str, is_error: bool = False) -> None:
        self.content = [TextPart(text)]
        self.isError = is_error


class AddingSession:
    """A tiny MCP client: ``call_tool`` adds, as a real server's tool would."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def call_tool(self, name: str, arguments: dict[str, Any] | None = None) -> CallResult:
        arguments = arguments or {}
        self.calls.append((name, arguments))
        if "a" not in arguments:
            return CallResult("a is required", is_error=True)
        return CallResult(str(arguments["a"] + arguments.get("b", 0)))


def test_from_mcp_tool_matches_dspy() -> None:
    import asyncio

    session = AddingSession()
    ours = dspyq.Tool.from_mcp_tool(session, McpTool())
    theirs = dspy.Tool.from_mcp_tool(session, McpTool())
    assert (ours.name, ours.desc, ours.args) == (theirs.name, theirs.desc, theirs.args)
    assert ours.arg_desc == theirs.arg_desc
    assert str(ours) == str(theirs)
    assert ours.format_as_litellm_function_call() == theirs.format_as_litellm_function_call()
    # DSPy needs the mcp package to read a call's result; ours reads the same shape without it.
    assert asyncio.run(ours.acall(a=2, b=3)) == "5.0"  # b is a JSON number: a float
    assert session.calls == [("add", {"a": 2, "b": 3})]
    with pytest.raises(RuntimeError, match="a is required"):
        asyncio.run(ours.acall(b=1))

"""ReAct and Tool: DSPy 3.4.1's agent loop, driven by scripted answers from the fake LM."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import BaseModel

from dspyq.core.context import context
from dspyq.core.react import ReAct, Tool
from dspyq.errors import ToolError
from dspyq.lm import LM
from dspyq.testing.fake_lm import FakeLMServer


@pytest.fixture
def lm(fake_lm: FakeLMServer) -> LM:
    return LM("openai/gpt-4o-mini", api_base=fake_lm.openai_base, api_key="test", cache=False)


def step(thought: str, tool: str, args: dict[str, Any]) -> str:
    return (
        f"[[ ## next_thought ## ]]\n{thought}\n\n[[ ## next_tool_name ## ]]\n{tool}\n\n"
        f"[[ ## next_tool_args ## ]]\n{json.dumps(args)}\n\n[[ ## completed ## ]]"
    )


def add(a: int, b: int = 1) -> int:
    """Add two numbers.

    Returns their sum."""
    return a + b


class Point(BaseModel):
    x: int
    y: int


def norm(p: Point) -> float:
    return (p.x**2 + p.y**2) ** 0.5


# --- Tool ----------------------------------------------------------------------------------


def test_tool_reads_name_docstring_and_arg_schemas():
    tool = Tool(add)
    assert tool.name == "add"
    assert tool.desc == add.__doc__
    assert tool.args == {"a": {"type": "integer"}, "b": {"type": "integer", "default": 1}}
    assert str(tool) == (
        "add, whose description is <desc>Add two numbers.        Returns their sum.</desc>. "
        "It takes arguments {'a': {'type': 'integer'}, 'b': {'type': 'integer', 'default': 1}}."
    )


def test_tool_inlines_model_schemas_and_parses_model_args():
    tool = Tool(norm, desc="Length of a point.")
    assert "$defs" not in json.dumps(tool.args)
    assert tool.args["p"]["properties"] == {
        "x": {"title": "X", "type": "integer"},
        "y": {"title": "Y", "type": "integer"},
    }
    assert tool(p={"x": 3, "y": 4}) == 5.0


def test_tool_validates_args():
    tool = Tool(add)
    assert tool(a="2", b=3) == 5  # lax coercion as for pydantic
    with pytest.raises(ToolError, match="Arg c is not in the tool's args"):
        tool(a=1, c=2)
    with pytest.raises(ToolError, match="Arg a of tool add is invalid"):
        tool(a="two")


def test_callable_objects_and_async_tools():
    class Multiply:
        """Multiply two numbers."""

        def __call__(self, a: int, b: int) -> int:
            return a * b

    async def fetch(url: str) -> str:
        return f"page at {url}"

    multiply = Tool(Multiply())
    assert (multiply.name, multiply.desc) == ("Multiply", "Multiply two numbers.")
    assert list(multiply.args) == ["a", "b"]
    assert asyncio.run(multiply.acall(a=2, b=3)) == 6
    assert asyncio.run(Tool(fetch).acall(url="x")) == "page at x"
    with pytest.raises(ToolError, match="async"):
        Tool(fetch)(url="x")


# --- ReAct ---------------------------------------------------------------------------------


def test_react_builds_dspys_signatures_and_instructions():
    agent = ReAct("question -> answer", tools=[add])
    react_signature = agent.react.signature
    assert list(react_signature.input_fields) == ["question", "trajectory"]
    assert list(react_signature.output_fields) == [
        "next_thought",
        "next_tool_name",
        "next_tool_args",
    ]
    assert react_signature.instructions == (
        "Given the fields `question`, produce the fields `answer`.\n\n"
        "You are an Agent. In each episode, you will be given the fields `question` as input. "
        "And you can see your past trajectory so far.\n"
        "Your goal is to use one or more of the supplied tools to collect any necessary "
        "information for producing `answer`.\n\n"
        "To do this, you will interleave next_thought, next_tool_name, and next_tool_args in "
        "each turn, and also when finishing the task.\n"
        "After each tool call, you receive a resulting observation, which gets appended to "
        "your trajectory.\n\n"
        "When writing next_thought, you may reason about the current situation and plan for "
        "future steps.\n"
        "When selecting the next_tool_name and its next_tool_args, the tool must be one of:\n\n"
        f"(1) {Tool(add)}\n"
        "(2) finish, whose description is <desc>Marks the task as complete. That is, signals "
        "that all information for producing the outputs, i.e. `answer`, are now available to "
        "be extracted.</desc>. It takes arguments {}.\n"
        "When providing `next_tool_args`, the value inside the field must be in JSON format"
    )
    extract_signature = agent.extract.predict.signature
    assert list(extract_signature.input_fields) == ["question", "trajectory"]
    assert list(extract_signature.output_fields) == ["reasoning", "answer"]
    assert [name for name, _ in agent.named_predictors()] == ["react", "extract.predict"]


def test_react_calls_tools_until_finish_then_extracts(fake_lm, lm):
    fake_lm.answer(step("Add them.", "add", {"a": 2, "b": 3}), match="next_tool_name", times=1)
    fake_lm.answer(step("Done.", "finish", {}), match="next_tool_name", times=1)
    fake_lm.answer_fields({"reasoning": "2+3=5", "answer": "5"}, match="`reasoning`")
    with context(lm=lm):
        prediction = ReAct("question -> answer", tools=[add])(question="What is 2+3?")

    assert prediction.answer == "5"
    assert prediction.reasoning == "2+3=5"
    assert prediction.trajectory == {
        "thought_0": "Add them.",
        "tool_name_0": "add",
        "tool_args_0": {"a": 2, "b": 3},
        "observation_0": 5,
        "thought_1": "Done.",
        "tool_name_1": "finish",
        "tool_args_1": {},
        "observation_1": "Completed.",
    }
    bodies = [entry["body"] for entry in fake_lm.requests]
    assert len(bodies) == 3
    second_user = bodies[1]["messages"][-1]["content"]
    assert second_user.startswith(
        "[[ ## question ## ]]\nWhat is 2+3?\n\n[[ ## trajectory ## ]]\n"
        "[[ ## thought_0 ## ]]\nAdd them.\n\n[[ ## tool_name_0 ## ]]\nadd\n\n"
        '[[ ## tool_args_0 ## ]]\n{"a": 2, "b": 3}\n\n[[ ## observation_0 ## ]]\n5\n\n'
        "Respond with the corresponding output fields"
    )
    first_user = bodies[0]["messages"][-1]["content"]
    assert first_user.startswith("[[ ## question ## ]]\nWhat is 2+3?\n\n[[ ## trajectory ## ]]\n\n")


def test_tool_errors_become_observations_and_the_loop_goes_on(fake_lm, lm, caplog):
    def boom(x: str) -> str:
        raise RuntimeError("disk on fire")

    fake_lm.answer(step("Try it.", "boom", {"x": "1"}), match="next_tool_name", times=1)
    fake_lm.answer(step("Give up.", "finish", {}), match="next_tool_name", times=1)
    fake_lm.answer_fields({"reasoning": "r", "answer": "unknown"}, match="`reasoning`")
    with context(lm=lm):
        prediction = ReAct("question -> answer", tools=[boom])(question="q")
    observation = prediction.trajectory["observation_0"]
    assert observation.startswith("Execution error in boom: \n")
    assert "RuntimeError: disk on fire" in observation
    assert prediction.trajectory["tool_name_1"] == "finish"
    assert any("disk on fire" in record.getMessage() for record in caplog.records)
    # the agent saw the error in its next prompt
    assert "disk on fire" in fake_lm.requests[1]["body"]["messages"][-1]["content"]


def test_an_unparseable_tool_choice_ends_the_loop_and_still_extracts(fake_lm, lm):
    fake_lm.answer(step("Hmm.", "no_such_tool", {}), match="next_tool_name")
    fake_lm.answer_fields({"reasoning": "r", "answer": "best guess"}, match="`reasoning`")
    with context(lm=lm):
        prediction = ReAct("question -> answer", tools=[add])(question="q")
    assert prediction.answer == "best guess"
    assert prediction.trajectory == {}


def test_max_iters_bounds_the_loop(fake_lm, lm):
    fake_lm.answer(step("Again.", "add", {"a": 1}), match="next_tool_name")
    fake_lm.answer_fields({"reasoning": "r", "answer": "a"}, match="`reasoning`")
    with context(lm=lm):
        prediction = ReAct("question -> answer", tools=[add], max_iters=3)(question="q")
        assert len(fake_lm.requests) == 4
        fake_lm.clear_requests()
        ReAct("question -> answer", tools=[add], max_iters=3)(question="q", max_iters=1)
        assert len(fake_lm.requests) == 2
    assert [prediction.trajectory[f"observation_{i}"] for i in range(3)] == [2, 2, 2]


def test_async_react_awaits_async_tools(fake_lm, lm):
    async def lookup(city: str) -> str:
        await asyncio.sleep(0)
        return f"{city}: sunny"

    fake_lm.answer(step("Look.", "lookup", {"city": "Oslo"}), match="next_tool_name", times=1)
    fake_lm.answer(step("Done.", "finish", {}), match="next_tool_name", times=1)
    fake_lm.answer_fields({"reasoning": "r", "answer": "sunny"}, match="`reasoning`")

    async def run() -> Any:
        with context(lm=lm):
            return await ReAct("question -> answer", tools=[lookup]).acall(question="Oslo?")

    prediction = asyncio.run(run())
    assert prediction.trajectory["observation_0"] == "Oslo: sunny"
    assert prediction.answer == "sunny"

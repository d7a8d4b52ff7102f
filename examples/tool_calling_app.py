"""The program of examples/tool_calling.py, in a module a worker can import.

``ToolAgent`` asks the LM which tools to call with native function calling (the tools
go in the request's ``tools``; the calls come back as ``tool_calls`` and are read into
a ``ToolCalls`` output), runs them, then answers from their results.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dspyq


def get_weather(city: str, unit: str = "celsius") -> str:
    """The current weather in a city."""
    return f"18 degrees {unit} and sunny in {city}"


def get_population(city: str) -> int:
    """How many people live in a city."""
    return {"Paris": 2_100_000}.get(city, 0)


class PlanCalls(dspyq.Signature):
    """Call the tools the question needs."""

    question: str = dspyq.InputField()
    tools: list[dspyq.Tool] = dspyq.InputField()
    calls: dspyq.ToolCalls = dspyq.OutputField()


class AnswerFromResults(dspyq.Signature):
    """Answer the question from the tool results."""

    question: str = dspyq.InputField()
    results: list[str] = dspyq.InputField()
    answer: str = dspyq.OutputField()


class ToolAgent(dspyq.Module):
    def __init__(self, tools: list[Callable[..., Any]]) -> None:
        super().__init__()
        self.tools = [dspyq.Tool(tool) for tool in tools]
        self.plan = dspyq.Predict(PlanCalls)
        self.answer = dspyq.Predict(AnswerFromResults)

    def forward(self, question: str) -> dspyq.Prediction:
        with dspyq.context(adapter=dspyq.ChatAdapter(use_native_function_calling=True)):
            calls = self.plan(question=question, tools=self.tools).calls
        results = [f"{call.name}: {call.execute(self.tools)}" for call in calls.tool_calls]
        return self.answer(question=question, results=results)

import json

import dspy
from dspy.utils import DummyLM


def weather(city: str) -> str:
    """Get the weather for a city."""
    return f"sunny in {city}"


class Plan(dspy.Signature):
    """Pick the tools to call."""

    question: str = dspy.InputField()
    tools: list[dspy.Tool] = dspy.InputField()
    calls: dspy.ToolCalls = dspy.OutputField()


lm = DummyLM([{"calls": '{"tool_calls": [{"name": "weather", "args": {"city": "Paris"}}]}'}])
dspy.configure(lm=lm)
tool = dspy.Tool(weather)
pred = dspy.Predict(Plan)(question="Weather in Paris?", tools=[tool])
results = [call.execute(functions=[tool]) for call in pred.calls.tool_calls]
print(
    json.dumps(
        {
            "calls": [[call.name, call.args] for call in pred.calls.tool_calls],
            "results": results,
            "tool": [tool.name, tool.desc, tool.args],
            "messages": lm.history[-1]["messages"],
        }
    )
)

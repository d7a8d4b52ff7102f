import asyncio
import json

import dspy
from dspy.utils import DummyLM


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


async def lookup(city: str) -> str:
    """Look up the country of a city."""
    return {"Paris": "France"}.get(city, "unknown")


lm = DummyLM(
    [
        {"next_thought": "add them", "next_tool_name": "add", "next_tool_args": {"a": 2, "b": 3}},
        {"next_thought": "done", "next_tool_name": "finish", "next_tool_args": {}},
        {"reasoning": "2+3=5", "answer": "5"},
        {
            "next_thought": "look it up",
            "next_tool_name": "lookup",
            "next_tool_args": {"city": "Paris"},
        },
        {"next_thought": "done", "next_tool_name": "finish", "next_tool_args": {}},
        {"reasoning": "found", "answer": "France"},
    ]
)
dspy.configure(lm=lm)
agent = dspy.ReAct("question -> answer", tools=[add], max_iters=3)
pred = agent(question="What is 2 + 3?")
async_agent = dspy.ReAct("question -> answer", tools=[lookup], max_iters=3)
apred = asyncio.run(async_agent.acall(question="Which country is Paris in?"))
print(
    json.dumps(
        {
            "answer": pred.answer,
            "trajectory": pred.trajectory,
            "async_answer": apred.answer,
            "async_trajectory": apred.trajectory,
            "predictors": [name for name, _ in agent.named_predictors()],
            "prompts": [entry["messages"] for entry in lm.history],
        }
    )
)

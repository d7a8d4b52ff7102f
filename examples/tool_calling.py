"""Native tool calling through the queue.

``python examples/tool_calling.py`` starts the dev stack (as the quickstart does) and
sends a question to ``ToolAgent`` (examples/tool_calling_app.py) on an ``openai`` worker
pool. The fake LM is scripted to answer the planning call with two tool calls; the
worker runs the tools and asks for the final answer. It prints the answer, the tools the
provider was offered and the calls it made.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
from rich.console import Console
from tool_calling_app import ToolAgent, get_population, get_weather

import dspyq
from dspyq.settings import get_settings
from dspyq.workers.dev import DevStack

console = Console()
LM = "openai/gpt-4o-mini"


def script_fake_lm(fake_lm_url: str) -> None:
    calls = [
        {"name": "get_weather", "arguments": {"city": "Paris"}},
        {"name": "get_population", "arguments": {"city": "Paris"}},
    ]
    answer = "Sunny, 18 degrees; 2.1 million people."
    rules = [
        {"match": "Call the tools the question needs", "tool_calls": calls},
        {"match": "Answer the question from the tool results", "fields": {"answer": answer}},
    ]
    httpx.post(f"{fake_lm_url}/_fake/script", json={"rules": rules}).raise_for_status()


def main() -> None:
    os.environ.setdefault("DSPYQ_PROVIDERS__OPENAI__API_KEY", "sk-demo")
    # The workers import the program's module (and its tools) from here.
    here = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    settings = get_settings()
    with DevStack(settings, pools=["openai"], flower_port=0, fake_lm_port=0) as stack:
        stack.wait_ready(timeout=120)
        assert stack.fake_lm_url is not None
        script_fake_lm(stack.fake_lm_url)
        client = dspyq.Client(settings)

        agent = ToolAgent(tools=[get_weather, get_population])
        job = client.submit(
            agent, lm=LM, question="What is the weather in Paris, and how many live there?"
        )
        console.print(f"answer: {job.result(timeout=60).answer}")

        planning, answering = httpx.get(f"{stack.fake_lm_url}/_fake/requests").json()[-2:]
        offered = [tool["function"]["name"] for tool in planning["body"]["tools"]]
        console.print(f"tools offered to the provider: {offered}")
        results = answering["body"]["messages"][-1]["content"]
        console.print(f"the answering call saw the tool results:\n{results}")
        client.close()


if __name__ == "__main__":
    main()

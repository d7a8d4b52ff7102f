"""Quickstart: DSPy-style programs executed by dspyq's worker pools, end to end.

``python examples/quickstart.py`` starts the dev stack (a Redis if none is reachable,
the fake LM server, an ``openai`` worker pool and Flower; SQLite in ./dspyq.db), then
sends a single call, a batch and a multi-hop question through the queue, and prints the
results, the event trace and the Flower URL. Everything stops when it is done.
"""

from __future__ import annotations

import os

import httpx
from rich.console import Console
from rich.table import Table
from rich.tree import Tree

import dspyq
from dspyq.settings import get_settings
from dspyq.workers.dev import DevStack

console = Console()
LM = "openai/gpt-4o-mini"


class AnswerQuestion(dspyq.Signature):
    """Answer the question with a short fact."""

    question: str = dspyq.InputField()
    answer: str = dspyq.OutputField(desc="a few words")


def script_fake_lm(fake_lm_url: str) -> None:
    """Teach the fake LM a few answers (the dev stack's providers all point at it)."""
    rules = [
        {"match": "sub_answers", "fields": {"reasoning": "Combine both.", "answer": "Paris, 2.1 million"}},
        {"match": "sub_questions", "fields": {
            "reasoning": "Two facts are needed.",
            "sub_questions": ["What is the capital of France?", "How many people live in Paris?"],
        }},
        {"match": "capital of France", "fields": {"reasoning": "Known fact.", "answer": "Paris"}},
        {"match": "people live in Paris", "fields": {"reasoning": "Census.", "answer": "2.1 million"}},
        {"match": "capital of Japan", "fields": {"reasoning": "Known fact.", "answer": "Tokyo"}},
        {"match": "capital of Kenya", "fields": {"reasoning": "Known fact.", "answer": "Nairobi"}},
    ]  # fmt: skip
    httpx.post(f"{fake_lm_url}/_fake/script", json={"rules": rules}).raise_for_status()


def print_trace(client: dspyq.Client, job: dspyq.Job) -> None:
    tree = Tree(f"[bold]trace of {job.correlation_id}")
    for event in client.events(job.correlation_id):
        data = event.data
        detail = ", ".join(
            f"{k}={data[k]}"
            for k in ("method", "model", "input_tokens", "output_tokens", "cost_usd",
                      "duration_ms", "cache_hit")
            if k in data
        )  # fmt: skip
        tree.add(f"{event.timestamp:%H:%M:%S.%f} [cyan]{event.event_type}[/] {detail}")
    console.print(tree)


def main() -> None:
    os.environ.setdefault("DSPYQ_PROVIDERS__OPENAI__API_KEY", "sk-demo")
    settings = get_settings()
    with DevStack(settings, pools=["openai"], flower_port=0, fake_lm_port=0) as stack:
        stack.wait_ready(timeout=120)
        assert stack.fake_lm_url is not None
        script_fake_lm(stack.fake_lm_url)
        client = dspyq.Client(settings)

        console.rule("A single call")
        job = client.submit(
            dspyq.ChainOfThought(AnswerQuestion), lm=LM, question="What is the capital of France?"
        )
        prediction = job.result(timeout=60)
        console.print(prediction)
        print_trace(client, job)

        console.rule("A batch")
        questions = ["What is the capital of Japan?", "What is the capital of Kenya?"]
        jobs = client.map(
            dspyq.Predict(AnswerQuestion), [{"question": q} for q in questions], lm=LM
        )
        table = Table("question", "answer", "status")
        for question, batch_job in zip(questions, jobs, strict=True):
            table.add_row(question, batch_job.result(timeout=60).answer, batch_job.status)
        console.print(table)

        console.rule("A multi-hop question (decompose -> hops in parallel -> synthesize)")
        hop_job = client.submit(
            dspyq.MultiHopQA(max_hops=2),
            lm=LM,
            question="What is the capital of France and how many people live there?",
        )
        answer = hop_job.result(timeout=60)
        console.print(answer)
        table = Table("execution", "parent", "status", "tokens")
        for row in client.executions(hop_job.correlation_id):
            table.add_row(row.task_id, row.parent_id or "-", row.status,
                          str((row.input_tokens or 0) + (row.output_tokens or 0)))  # fmt: skip
        console.print(table)

        console.rule("Flower")
        user = stack.flower_auth.split(":", 1)[0]
        console.print(
            f"Flower: {stack.flower_url} (user {user!r}; password in FLOWER_BASIC_AUTH or printed by `dspyq dev`)"
        )
        client.close()


if __name__ == "__main__":
    main()

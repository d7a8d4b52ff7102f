"""The production loop end to end: deploy -> serve -> feedback -> watch alert -> improve ->
canary -> promote, against the fake LM.

``python examples/production_loop.py`` starts the dev stack (Redis if none answers, the
fake LM, an ``openai`` and an ``optimize`` worker; SQLite in ./dspyq.db). Version 1 of
``qa`` answers only half the questions well; users' feedback says so; the watcher
raises an alert when the LM starts to fail; ``client.improve`` learns demos from the
feedback, and the better version 2 goes out as a canary that the watcher promotes.
"""

from __future__ import annotations

import contextlib
import os
import time

import redis
from rich.console import Console

import dspyq
from dspyq.settings import get_settings
from dspyq.watch import Watcher
from dspyq.workers.dev import DevStack

console = Console()
LM = "openai/gpt-4o-mini"
QUESTIONS = [f"question q{n}" for n in range(30)]


def good_answer(
    example: dspyq.Example, prediction: dspyq.Prediction, trace: object = None
) -> float:
    """The users' judgement of an answer (here: whether it is the good one)."""
    return 1.0 if prediction.answer == "good" else 0.0


def teach_fake_lm(stack: DevStack) -> None:
    """With a demo of a good answer in the prompt every answer is good; without, only
    even-numbered questions get one."""
    import httpx

    rules = [
        {"match": r"\[\[ ## answer ## \]\]\s*good", "fields": {"answer": "good"}},
        {"match": r"q\d*[02468]\b", "fields": {"answer": "good"}},
        {"match": r"q\d+", "fields": {"answer": "bad"}},
    ]
    httpx.post(f"{stack.fake_lm_url}/_fake/script", json={"rules": rules}).raise_for_status()


def serve_with_feedback(client: dspyq.Client, rounds: int = 1) -> float:
    """Answer every question through ``qa@production`` and give each answer feedback."""
    scores = []
    for _ in range(rounds):
        jobs = [client.submit("qa@production", question=q) for q in QUESTIONS]
        for job in jobs:
            score = 1.0 if job.result(timeout=60).answer == "good" else 0.0
            client.feedback(job.id, score)
            scores.append(score)
    return sum(scores) / len(scores)


def main() -> None:
    os.environ.setdefault("DSPYQ_PROVIDERS__OPENAI__API_KEY", "sk-demo")
    # Workers import the metric by its path, "production_loop:good_answer".
    here = os.path.dirname(os.path.abspath(__file__))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    # Short windows, so the example runs in a minute rather than in hours.
    os.environ.setdefault("DSPYQ_PROVIDERS__OPENAI__RATE_LIMIT", "6000/m")
    os.environ.setdefault("DSPYQ_WATCH__WINDOW_SECONDS", "30")
    os.environ.setdefault("DSPYQ_WATCH__INTERVAL_SECONDS", "1")
    settings = get_settings()
    # The example looks through its own watcher (at the moments it chooses) instead of
    # the stack's `dspyq watch` process.
    stack = DevStack(
        settings, pools=["openai", "optimize"], flower_port=0, fake_lm_port=0, watch=False
    )
    with stack:
        stack.wait_ready(timeout=120)
        teach_fake_lm(stack)
        client = dspyq.Client(settings)
        watcher = Watcher(
            settings, client.engine, redis.Redis.from_url(settings.effective_redis_url)
        )

        console.rule("deploy version 1")
        program = dspyq.Predict("question -> answer")
        program.lm = dspyq.LM(LM)
        client.save_program("qa", program)
        deployment = client.deploy("qa")
        console.print(
            f"qa@production -> version {deployment.version} ({len(deployment.steps)} steps)"
        )

        console.rule("serve, with feedback")
        console.print(f"mean feedback of version 1: {serve_with_feedback(client):.2f}")

        console.rule("the LM starts failing: the watcher alerts")
        httpx_fail(stack, count=10)
        jobs = [client.submit("qa@production", question=f"new question z{n}") for n in range(10)]
        for job in jobs:
            with contextlib.suppress(dspyq.DspyqError):
                job.result(timeout=60)
        time.sleep(1.5)  # a window ends at the watcher's last whole interval
        for alert in watcher.look().alerts:
            console.print(f"ALERT {alert.kind} on qa:{alert.program_version}: "
                          f"{alert.observed:.2f} > {alert.threshold:.2f}")  # fmt: skip

        console.rule("improve from feedback")
        outcome = client.improve(
            "qa", metric="production_loop:good_answer", canary=0.5, canary_window=3, min_samples=10
        )
        console.print(f"{outcome.status}: {outcome.reason}")
        if outcome.status != "deployed":
            raise SystemExit(1)
        lineage = client.lineage("qa", outcome.version or 1)[0]
        console.print(f"lineage: version {lineage.version} <- version {lineage.parent_version}, "
                      f"run {lineage.run_id}, {len(lineage.feedback_ids)} feedback rows")  # fmt: skip

        console.rule("the canary serves, the watcher judges it")
        verdict = None
        deadline = time.monotonic() + 120
        while verdict is None and time.monotonic() < deadline:
            serve_with_feedback(client)
            for canary in watcher.look().canaries:
                verdict = canary.action or verdict
        console.print(f"canary {verdict}")
        target = next(d for d in client.deployments("qa") if d.action == "deploy")
        console.print(f"qa@production -> version {target.version}, status {target.status}")
        console.print(f"mean feedback now: {serve_with_feedback(client):.2f}")
        client.close()


def httpx_fail(stack: DevStack, count: int) -> None:
    import httpx

    failures = [{"count": count, "status": 400}]
    httpx.post(f"{stack.fake_lm_url}/_fake/script", json={"failures": failures}).raise_for_status()


if __name__ == "__main__":
    main()

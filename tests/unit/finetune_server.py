"""The fake server set up for fine-tuning runs of DSPy and dspyq side by side.

It answers the sums below (one of them wrong, so a metric has something to drop);
DSPy's OpenAI provider uses the ``openai`` SDK's module client, pointed here at the
fake server, and its 20-second poll is shortened, as ours is by its setting.
"""

from __future__ import annotations

import re
import time
import types
from collections.abc import Iterator
from typing import Any

import dspy
import openai
import pytest

from dspyq.core.context import context
from dspyq.lm.lm import LM
from dspyq.testing import FakeLMServer

SUMS = [(f"{a}+{b}", str(a + b)) for a, b in zip(range(12), range(3, 15), strict=True)]
WRONG = {"4+7"}  # the model gets this one wrong


@pytest.fixture
def finetuning(
    fake_lm: FakeLMServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> Iterator[FakeLMServer]:
    fake_lm.configure(finetune_seconds=0.1)
    for question, answer in SUMS:
        reply = "0" if question in WRONG else answer
        pattern = re.escape(f"## question ## ]]\n{question}\n")
        fake_lm.answer_fields({"answer": reply}, match=pattern)
    monkeypatch.setattr(openai, "base_url", fake_lm.openai_base + "/")
    monkeypatch.setattr(openai, "api_key", "sk-test")
    real_sleep = time.sleep
    fast = types.SimpleNamespace(sleep=lambda _seconds: real_sleep(0.05))
    monkeypatch.setattr(dspy.clients.openai, "time", fast)
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch from the network
    monkeypatch.setenv("DSPY_FINETUNEDIR", str(tmp_path / "theirs"))
    monkeypatch.setenv("DSPYQ_FINETUNEDIR", str(tmp_path / "ours"))
    with context(finetune_poll_interval=0.05):
        yield fake_lm


def their_lm(server: FakeLMServer) -> Any:
    return dspy.LM(
        "openai/gpt-4o-mini", api_base=server.openai_base, api_key="sk-test", cache=False
    )


def our_lm(server: FakeLMServer) -> LM:
    return LM("openai/gpt-4o-mini", api_base=server.openai_base, api_key="sk-test", cache=False)


def uploads(server: FakeLMServer) -> list[bytes]:
    return [f.content for f in server.state.finetunes.files.values()]


def jobs(server: FakeLMServer) -> list[Any]:
    return list(server.state.finetunes.jobs.values())


def structure(program: Any) -> list[Any]:
    """Each predictor's model (job ids made generic), demos and instructions; not those of
    the candidates BetterTogether attaches to the program it returns."""
    return [
        (name, re.sub(r"ftjob-\w+", "JOB", p.lm.model), p.demos, p.signature.instructions)
        for name, p in program.named_predictors()
        if not name.startswith("candidate_programs")
    ]

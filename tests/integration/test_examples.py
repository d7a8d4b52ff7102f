"""The examples in examples/ run as a user would run them."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _run(script: str, cwd: Path) -> str:
    env = {**os.environ, "DSPYQ_KEY_PREFIX": f"dspyqex{uuid.uuid4().hex[:8]}"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_in_process_example_prints_prediction_and_prompt(tmp_path: Path) -> None:
    out = _run("in_process.py", tmp_path)
    assert "Answer: Paris" in out
    assert "[[ ## question ## ]]" in out


def test_quickstart_runs_through_the_queue(tmp_path: Path) -> None:
    out = _run("quickstart.py", tmp_path)
    assert "Paris" in out and "Tokyo" in out and "Nairobi" in out
    assert "module_execution_complete" in out
    assert "Paris, 2.1 million" in out
    assert "Flower: http://127.0.0.1:" in out
    assert (tmp_path / "dspyq.db").exists()


def test_production_loop_deploys_alerts_improves_and_promotes(tmp_path: Path) -> None:
    out = _run("production_loop.py", tmp_path)
    assert "mean feedback of version 1: 0.50" in out
    assert "ALERT lm_request_failure_rate on qa:1" in out
    assert "deployed: version 2 scored 100.0" in out
    assert "lineage: version 2 <- version 1" in out
    assert "canary promoted" in out
    assert "qa@production -> version 2, status succeeded" in out
    assert "mean feedback now: 1.00" in out


def test_image_input_example_sends_content_parts_through_the_queue(tmp_path: Path) -> None:
    out = _run("image_input.py", tmp_path)
    assert out.count("animal: a cat") == 2
    assert out.count("the provider received: ['text', 'image_url', 'text']") == 2
    assert out.count("image sent intact: True") == 2
    assert "base64,<812 chars>" in out  # the event shows the data URI summarised


def test_tool_calling_example_calls_tools_natively_through_the_queue(tmp_path: Path) -> None:
    out = _run("tool_calling.py", tmp_path)
    assert "answer: Sunny, 18 degrees; 2.1 million people." in out
    assert "tools offered to the provider: ['get_weather', 'get_population']" in out
    assert "get_weather: 18 degrees celsius and sunny in Paris" in out
    assert "2100000" in out

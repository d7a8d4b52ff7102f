"""The ``dspyq`` command, run as a real process: help, option errors, fake-lm and dev."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from process_fixtures import free_port

pytestmark = pytest.mark.integration

BROKER_DB = 12


def _dspyq(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dspyq", *args],
        cwd=cwd,
        env=env or dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run(*args: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dspyq", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _wait_http(url: str, timeout: float = 20.0, **kwargs: object) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=1.0, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_help_lists_every_command_with_its_summary(tmp_path: Path) -> None:
    result = _run("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for command, summary in [
        ("fake-lm", "Serve the fake OpenAI/Anthropic-compatible LM server."),
        ("worker", "Start a Celery worker for one pool's queue."),
        ("dev", "Run Redis, the fake LM, workers and Flower until Ctrl-C."),
    ]:
        assert command in result.stdout
        assert summary in result.stdout


def test_worker_with_unknown_pool_exits_2_listing_valid_pools(tmp_path: Path) -> None:
    result = _run("worker", "--pool", "nope", cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown pool 'nope'; valid pools: anthropic, local, openai, optimize" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "dspyq.db").exists()  # refused before touching anything


def test_fake_lm_serves_models_and_refuses_a_busy_port(tmp_path: Path) -> None:
    port = free_port()
    server = _dspyq("fake-lm", "--port", str(port), "--latency", "0.0", cwd=tmp_path)
    try:
        response = _wait_http(f"http://127.0.0.1:{port}/v1/models")
        assert response.status_code == 200
        assert response.json()["data"][0]["id"] == "fake-model"

        second = _run("fake-lm", "--port", str(port), cwd=tmp_path)
        assert second.returncode == 1
        assert f"port {port} on 127.0.0.1 is already in use" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_fake_lm_applies_a_script_file(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text('{"models": ["scripted-model"], "rules": [{"answer": "hi"}]}')
    port = free_port()
    server = _dspyq("fake-lm", "--port", str(port), "--script", str(script), cwd=tmp_path)
    try:
        response = _wait_http(f"http://127.0.0.1:{port}/v1/models")
        assert [m["id"] for m in response.json()["data"]] == ["scripted-model"]
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_fake_lm_rejects_bad_scripts_clearly(tmp_path: Path) -> None:
    cases = {
        "missing.json": (None, "cannot read the script"),
        "broken.json": ("{not json", "is not valid JSON"),
        "list.json": ("[1, 2]", "must hold a JSON object"),
        "typo.json": ('{"rules": [{"answer": "x", "colour": "red"}]}', "rules.0.colour"),
    }
    runs = {}
    for name, (content, _) in cases.items():
        if content is not None:
            (tmp_path / name).write_text(content)
        runs[name] = _dspyq("fake-lm", "--port", str(free_port()), "--script", name, cwd=tmp_path)
    for name, process in runs.items():
        _, err = process.communicate(timeout=30)
        assert process.returncode == 2, (name, err)
        assert cases[name][1] in err, (name, err)
        assert "Traceback" not in err


def test_dev_runs_until_sigterm_and_frees_its_ports(tmp_path: Path, broker_url: str) -> None:
    flower_port, fake_port = free_port(), free_port()
    env = {**os.environ, "DSPYQ_BROKER_URL": broker_url, "FLOWER_BASIC_AUTH": "dev:pw"}
    env.pop("DSPYQ_REDIS_URL", None)
    env.pop("DSPYQ_DATABASE_URL", None)
    dev = _dspyq(
        "dev",
        "--workers", "optimize",
        "--flower-port", str(flower_port),
        "--fake-lm-port", str(fake_port),
        cwd=tmp_path,
        env=env,
    )  # fmt: skip
    try:
        assert dev.stdout is not None
        banner = ""
        deadline = time.monotonic() + 60
        while "Ctrl-C to stop" not in banner and time.monotonic() < deadline:
            line = dev.stdout.readline()
            if not line:
                break
            banner += line
        assert "dspyq dev stack" in banner, banner
        assert f"http://127.0.0.1:{flower_port}" in banner
        assert f"http://127.0.0.1:{fake_port}/v1" in banner
        assert "dev:pw" not in banner  # a password given in the environment is not shown
        flower = httpx.get(f"http://127.0.0.1:{flower_port}/", auth=("dev", "pw"), timeout=5)
        assert flower.status_code == 200
        assert (tmp_path / ".dspyq" / "logs" / "worker-optimize.log").exists()
        assert (tmp_path / "dspyq.db").exists()  # SQLite in the working directory
    finally:
        dev.send_signal(signal.SIGTERM)
        _, err = dev.communicate(timeout=30)
    assert dev.returncode == 0, err
    for port in (flower_port, fake_port):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)

"""``dspyq watch --once``, ``dspyq alerts`` and ``dspyq improve``'s options, as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from watch_fixtures import served

from dspyq.store import init_db, make_engine

pytestmark = pytest.mark.integration


def _run(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dspyq", *args],
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_watch_once_raises_the_alert_that_alerts_then_lists(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    url = f"sqlite:///{tmp_path / 'dspyq.db'}"
    engine = make_engine(url)
    init_db(engine)
    served(engine, "qa", 3, at=datetime.now(UTC) - timedelta(seconds=20), duration_ms=900, count=5)
    engine.dispose()
    env = {
        "DSPYQ_DATABASE_URL": url,
        "DSPYQ_BROKER_URL": redis_url,
        "DSPYQ_KEY_PREFIX": prefix,
        "DSPYQ_WATCH__MODULE_EXECUTION_P95_MS": "500",
    }
    looked = _run("watch", "--once", "--json", env=env, cwd=tmp_path)
    assert looked.returncode == 0, looked.stderr
    report = json.loads(looked.stdout)
    assert report["leader"] is True
    [alert] = report["alerts"]
    assert (alert["kind"], alert["program_name"], alert["observed"]) == (
        "module_execution_p95",
        "qa",
        900.0,
    )
    listed = _run("alerts", "--json", env=env, cwd=tmp_path)
    assert [a["id"] for a in json.loads(listed.stdout)] == [alert["id"]]
    table = _run("alerts", "--since", "2000-01-01T00:00:00Z", env=env, cwd=tmp_path)
    assert "module_execution_p95" in table.stdout and "qa:3" in table.stdout
    later = _run("alerts", "--since", "2999-01-01T00:00:00Z", env=env, cwd=tmp_path)
    assert "no alerts" in later.stdout
    bad = _run("alerts", "--since", "yesterday", env=env, cwd=tmp_path)
    assert bad.returncode == 2 and "is not an ISO time" in bad.stderr


def test_improve_refuses_a_bad_period(tmp_path: Path) -> None:
    done = _run("improve", "qa", "--metric", "m:f", "--every", "5x", env={}, cwd=tmp_path)
    assert done.returncode == 2
    assert "must look like 90s, 30m, 1h or 1d" in done.stderr

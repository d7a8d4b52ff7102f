"""A worker's Prometheus endpoint, scraped over HTTP after real jobs ran through it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from process_fixtures import free_port
from prometheus_client.parser import text_string_to_metric_families

import dspyq
from dspyq.errors import DspyqError
from dspyq.testing.cluster import Cluster, make_cluster

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def start_worker_with_metrics(cluster: Cluster, name: str, port: int) -> None:
    """A worker like ``Cluster.start_worker`` plus ``--metrics-port``."""
    log = open(cluster.tmp_path / f"worker-{name}.log", "ab")  # noqa: SIM115 - kept by Popen
    cluster.workers[name] = subprocess.Popen(
        [
            sys.executable, "-m", "dspyq", "worker", "--pool", "openai", "--concurrency", "2",
            "--hostname", f"{name}@%h", "--metrics-port", str(port),
        ],
        env=cluster.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    cluster.wait_ready(name)


def scrape(port: int) -> Samples:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


@pytest.fixture
def make(tmp_path: Path, sqlite_url: str) -> Iterator[object]:
    made: list[tuple[Cluster, object]] = []

    def build(**env: str) -> Cluster:
        cluster, server = make_cluster(tmp_path, sqlite_url, latency=0.01, **env)
        made.append((cluster, server))
        return cluster

    yield build
    for cluster, server in made:
        cluster.stop()
        server.stop()  # type: ignore[attr-defined]


def test_metrics_endpoint_counts_jobs_lm_calls_and_cache(make) -> None:  # type: ignore[no-untyped-def]
    cluster = make()
    cluster.fake_lm.answer("no fields here at all", match="BROKEN")
    cluster.fake_lm.answer_fields({"answer": "yes"})
    port = free_port()
    start_worker_with_metrics(cluster, "m1", port)
    qa = dspyq.Predict("question -> answer")

    jobs = [cluster.client.submit(qa, lm="openai/gpt-4o-mini", question=f"Q{i}") for i in range(3)]
    assert [job.result(timeout=30).answer for job in jobs] == ["yes"] * 3
    # map() may carry several jobs in one message: each still counts as one execution.
    mapped = cluster.client.map(
        qa, [{"question": f"M{i}"} for i in range(4)], lm="openai/gpt-4o-mini"
    )
    assert [job.result(timeout=30).answer for job in mapped] == ["yes"] * 4
    again = cluster.client.submit(qa, lm="openai/gpt-4o-mini", question="Q0")  # served by the cache
    assert again.result(timeout=30).answer == "yes"
    broken = cluster.client.submit(qa, lm="openai/gpt-4o-mini", question="BROKEN")
    with pytest.raises(DspyqError):
        broken.result(timeout=30)

    samples = scrape(port)
    predict = {"module": "Predict", "provider": "openai"}
    assert value(samples, "dspyq_module_execution_success_total", **predict) == 8
    assert value(samples, "dspyq_module_execution_error_total", **predict) == 1
    assert value(samples, "dspyq_module_execution_duration_seconds_count", **predict) == 9
    calls = value(samples, "dspyq_lm_request_duration_seconds_count", provider="openai")
    assert calls >= 9  # the broken job tried its JSON fallback too
    assert value(samples, "dspyq_lm_request_duration_seconds_count", cache_hit="true") == 1
    assert value(samples, "dspyq_lm_request_tokens_total", direction="input") > 0
    assert value(samples, "dspyq_lm_request_tokens_total", direction="output") > 0
    assert value(samples, "dspyq_lm_request_cost_usd_total", provider="openai") > 0
    assert value(samples, "dspyq_cache_hits_total", layer="l1") == 1
    assert 0 < value(samples, "dspyq_cache_hit_rate") < 1
    assert value(samples, "dspyq_circuit_breaker_state", provider="openai") == 0

    # Every log line a job writes carries its correlation id; lines outside jobs show "-".
    log = (cluster.tmp_path / "worker-m1.log").read_text()
    assert f"[{broken.correlation_id}]" in log
    assert "] [-] " in log


def test_open_breaker_and_failed_jobs_show_up(make) -> None:  # type: ignore[no-untyped-def]
    cluster = make(
        DSPYQ_PROVIDERS__OPENAI__BREAKER_FAIL_MAX="1",
        DSPYQ_PROVIDERS__OPENAI__NUM_RETRIES="0",
    )
    cluster.fake_lm.fail_next(1, 500)
    port = free_port()
    start_worker_with_metrics(cluster, "m2", port)

    job = cluster.client.submit(
        dspyq.Predict("question -> answer"), lm="openai/gpt-4o-mini", question="q"
    )
    with pytest.raises(DspyqError):
        job.result(timeout=30)

    samples = scrape(port)
    assert value(samples, "dspyq_circuit_breaker_state", provider="openai") == 2
    errors = {
        dict(labels)["error"]: v
        for (name, labels), v in samples.items()
        if name == "dspyq_module_execution_error_total"
    }
    assert sum(errors.values()) == 1, errors
    assert value(samples, "dspyq_lm_request_duration_seconds_count", status="ok") == 0


def test_rate_limiter_rejections_are_counted(make) -> None:  # type: ignore[no-untyped-def]
    cluster = make(DSPYQ_PROVIDERS__OPENAI__RATE_LIMIT="1/m")
    cluster.fake_lm.answer_fields({"answer": "yes"})
    port = free_port()
    start_worker_with_metrics(cluster, "m3", port)
    qa = dspyq.Predict("question -> answer")

    assert (
        cluster.client.submit(qa, lm="openai/gpt-4o-mini", question="a").result(timeout=30).answer
    )
    cluster.client.submit(qa, lm="openai/gpt-4o-mini", question="b")  # refused: waits a minute
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        samples = scrape(port)
        if value(samples, "dspyq_rate_limiter_rejected_total", provider="openai") >= 1:
            break
        time.sleep(0.2)
    assert value(samples, "dspyq_rate_limiter_rejected_total", provider="openai") >= 1
    assert value(samples, "dspyq_module_execution_success_total") == 1
    # A re-queued delivery is neither a success nor an error.
    assert value(samples, "dspyq_module_execution_error_total") == 0


def test_metrics_port_in_use_is_a_clear_error(make) -> None:  # type: ignore[no-untyped-def]
    import socket

    cluster = make()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "dspyq", "worker", "--pool", "openai",
             "--metrics-port", str(port)],
            env=cluster.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr

"""Security of the queue: only JSON is executed, secrets stay on workers, Redis with a
password or TLS works, and a forged message cannot make a worker import what it names."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from private_redis import PrivateRedis, free_port, redis_server_binaries
from sqlalchemy import MetaData, select

import dspyq
from dspyq.api_client.submit import build_request
from dspyq.errors import ConfigurationError, DspyqError
from dspyq.store import make_engine
from dspyq.tasks.app import lm_queue
from dspyq.tasks.execute import EXECUTE_TASK
from dspyq.testing.cluster import SECRET_KEY, Cluster, make_cluster

pytestmark = pytest.mark.integration

FLOWER_AUTH = ("admin", "flower-test-password")


def _qa() -> dspyq.Predict:
    return dspyq.Predict("question -> answer")


def _request(cluster: Cluster, **inputs: Any) -> dict[str, Any]:
    """A valid execution request as the client would enqueue it (JSON form)."""
    request, _ = build_request(cluster.client, _qa(), "openai/m", (), None, None, inputs, spec=None)
    return request.model_dump(mode="json")


def _sql_dump(database_url: str) -> str:
    """Every row of every table of the store, as text."""
    engine = make_engine(database_url)
    metadata = MetaData()
    metadata.reflect(engine)
    with engine.connect() as conn:
        rows = [
            f"{table.name} {tuple(row)!r}"
            for table in metadata.sorted_tables
            for row in conn.execute(select(table))
        ]
    engine.dispose()
    return "\n".join(rows)


def _start_flower(cluster: Cluster, port: int) -> subprocess.Popen[bytes]:
    log = open(cluster.tmp_path / "flower.log", "ab")  # noqa: SIM115 - kept by Popen
    return subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "dspyq.tasks.celery_app", "flower",
            f"--port={port}", "--address=127.0.0.1",
            f"--basic-auth={FLOWER_AUTH[0]}:{FLOWER_AUTH[1]}",
        ],
        env=cluster.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def _flower_pages(port: int, task_ids: list[str], timeout: float = 30) -> str:
    """Flower's task list (API) and every task's page, once Flower has seen all tasks."""
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(f"{base}/api/tasks", auth=FLOWER_AUTH, timeout=5)
            if answer.status_code == 200:
                seen = answer.json()
                if set(task_ids) <= set(seen):
                    break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    assert set(task_ids) <= set(seen), f"Flower saw {sorted(seen)} of {task_ids}"
    # Flower requires its login: without it nothing is shown.
    assert httpx.get(f"{base}/api/tasks", timeout=5).status_code == 401
    pages = [answer.text]
    pages += [httpx.get(f"{base}/task/{t}", auth=FLOWER_AUTH, timeout=5).text for t in task_ids]
    # Each page shows the job's arguments, where a key would be if one travelled.
    assert all("correlation_id" in page for page in pages[1:])
    return "\n".join(pages)


def test_planted_key_never_leaves_the_worker(tmp_path: Path, sqlite_url: str) -> None:
    cluster, server = make_cluster(
        tmp_path,
        sqlite_url,
        latency=0.0,
        DSPYQ_PROVIDERS__OPENAI__NUM_RETRIES="0",
        DSPYQ_PROVIDERS__OPENAI__BREAKER_FAIL_MAX="100",
    )
    flower_port = free_port()
    flower = _start_flower(cluster, flower_port)
    try:
        server.configure(api_key=SECRET_KEY)  # the fake provider checks the key it is sent
        server.answer_fields({"answer": "ok"}, match="good")
        cluster.start_worker("w1", concurrency=2)
        time.sleep(6)  # Flower turns the workers' task events on every few seconds
        good = cluster.client.submit(_qa(), lm="openai/m", question="good")
        assert good.result(timeout=30).answer == "ok"
        server.fail_next(1, 500)
        failing = cluster.client.submit(_qa(), lm="openai/m", question="fails")
        with pytest.raises(DspyqError):
            failing.result(timeout=30)
        server.fail_next(1, 401)
        refused = cluster.client.submit(_qa(), lm="openai/m", question="refused")
        with pytest.raises(DspyqError):
            refused.result(timeout=30)
        assert all(r["had_key"] for r in server.requests)  # the key was really sent

        places = {
            "redis": cluster.redis_dump(),
            "sql": _sql_dump(sqlite_url),
            "worker log": cluster.log("w1"),
            "flower": _flower_pages(flower_port, [good.id, failing.id, refused.id]),
        }
        assert "ok" in places["sql"] and good.id in places["redis"]  # the search finds things
        for place, text in places.items():
            assert SECRET_KEY not in text, f"the API key leaked into {place}"
            assert SECRET_KEY[3:15] not in text, f"part of the API key leaked into {place}"
    finally:
        flower.terminate()
        flower.wait(timeout=15)
        cluster.stop()
        server.stop()


def test_pickle_and_forged_imports_are_refused(tmp_path: Path, sqlite_url: str) -> None:
    # A module that would prove it was imported: it writes a file when loaded.
    marker = tmp_path / "imported.txt"
    (tmp_path / "forged_payload.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n"
        "class Evil:\n    pass\n"
    )
    cluster, server = make_cluster(
        tmp_path,
        sqlite_url,
        latency=0.0,
        DSPYQ_ALLOWED_IMPORTS='["dspyq"]',
        PYTHONPATH=str(tmp_path),
    )
    try:
        server.answer_fields({"answer": "ok"})
        worker = cluster.start_worker("w1", concurrency=1)
        app = cluster.client.app

        # A pickled message: the worker must not deserialize it, let alone run it.
        app.send_task(
            EXECUTE_TASK,
            kwargs={"request": _request(cluster, question="pickled")},
            queue=lm_queue("openai"),
            serializer="pickle",
        )
        deadline = time.monotonic() + 10
        while "untrusted content" not in cluster.log("w1") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "untrusted content of type pickle" in cluster.log("w1")
        assert server.requests == []
        assert "pickled" not in _sql_dump(sqlite_url)

        # A JSON message naming a module outside DSPYQ_ALLOWED_IMPORTS.
        forged = _request(cluster, question="forged")
        forged["program"]["kind"] = "forged_payload:Evil"
        job = cluster.client.job(
            app.send_task(EXECUTE_TASK, kwargs={"request": forged}, queue=lm_queue("openai")).id
        )
        with pytest.raises(ConfigurationError, match=r"'forged_payload:Evil' is refused.*ALLOWED"):
            job.result(timeout=30)
        assert not marker.exists(), "the worker imported the forged module"

        # The worker survived both and still runs real jobs.
        assert worker.poll() is None
        assert cluster.client.submit(_qa(), lm="openai/m", question="q").result(30).answer == "ok"
        assert len(server.requests) == 1
    finally:
        cluster.stop()
        server.stop()


def test_broker_with_a_password(tmp_path: Path, sqlite_url: str) -> None:
    password = "redis-test-password-42"
    broker = PrivateRedis(tmp_path / "redis", password=password).start()
    cluster, server = make_cluster(tmp_path, sqlite_url, latency=0.0, redis_url=broker.url)
    try:
        server.answer_fields({"answer": "ok"})
        cluster.start_worker("w1", concurrency=2)
        jobs = cluster.client.map(_qa(), [{"question": f"q{i}"} for i in range(5)], lm="openai/m")
        assert [j.result(timeout=30).answer for j in jobs] == ["ok"] * 5
        assert password not in cluster.log("w1")
    finally:
        cluster.stop()
        server.stop()
        broker.stop()


def _make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1, made with openssl."""
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, csr, crt = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "san.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
        "-keyout", str(ca_key), "-out", str(ca_crt))  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", str(key), "-out", str(csr))  # fmt: skip
    run("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "1", "-extfile", str(ext), "-out", str(crt))  # fmt: skip
    return ca_crt, crt, key


def test_broker_over_tls(tmp_path: Path, sqlite_url: str) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    certs = tmp_path / "certs"
    certs.mkdir()
    ca, crt, key = _make_certificates(certs)
    broker = None
    for binary in redis_server_binaries():
        try:
            broker = PrivateRedis(
                tmp_path / "redis",
                "--tls-port",
                "--tls-cert-file", str(crt),
                "--tls-key-file", str(key),
                "--tls-ca-cert-file", str(ca),
                "--tls-auth-clients", "no",
                binary=binary,
            ).start()  # fmt: skip
            break
        except RuntimeError:
            continue  # built without TLS: try the next one
    if broker is None:
        pytest.skip(f"no redis-server with TLS among {redis_server_binaries()}")
    url = f"rediss://127.0.0.1:{broker.port}/0?ssl_cert_reqs=required&ssl_ca_certs={ca}"
    cluster, server = make_cluster(tmp_path, sqlite_url, latency=0.0, redis_url=url)
    try:
        server.answer_fields({"answer": "ok"})
        cluster.start_worker("w1", concurrency=2)
        jobs = cluster.client.map(_qa(), [{"question": f"q{i}"} for i in range(5)], lm="openai/m")
        assert [j.result(timeout=30).answer for j in jobs] == ["ok"] * 5
        assert cluster.redis_dump()  # the dump itself is read over TLS
    finally:
        cluster.stop()
        server.stop()
        broker.stop()

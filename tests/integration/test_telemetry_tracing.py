"""One trace per correlation id, across the client and a worker, received over OTLP/HTTP."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from process_fixtures import free_port
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import dspyq
from dspyq.api_client import Client
from dspyq.settings import TelemetrySettings
from dspyq.telemetry import tracing
from dspyq.testing.cluster import Cluster, make_cluster

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    pid: int
    attributes: dict[str, object]
    error: bool


class OTLPReceiver:
    """A tiny OTLP/HTTP collector: decodes the protobuf export requests it is sent."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.port = free_port()
        app = Starlette(routes=[Route("/v1/traces", self._export, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _export(self, request: Request) -> Response:
        export = ExportTraceServiceRequest.FromString(await request.body())
        for resource_spans in export.resource_spans:
            resource = {a.key: a.value for a in resource_spans.resource.attributes}
            pid = int(resource["process.pid"].int_value)
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    attributes: dict[str, object] = {}
                    for a in span.attributes:
                        kind = a.value.WhichOneof("value")
                        attributes[a.key] = getattr(a.value, kind) if kind else None
                    self.spans.append(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            pid=pid,
                            attributes=attributes,
                            error=span.status.code == 2,
                        )
                    )
        body = ExportTraceServiceResponse().SerializeToString()
        return Response(body, media_type="application/x-protobuf")

    def start(self) -> OTLPReceiver:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)

    def wait_for(self, trace_id: str, count: int, timeout: float = 20.0) -> list[ReceivedSpan]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [s for s in self.spans if s.trace_id == trace_id]
            if len(found) >= count:
                return found
            time.sleep(0.1)
        return [s for s in self.spans if s.trace_id == trace_id]


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    server = OTLPReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def cluster(tmp_path: Path, sqlite_url: str, receiver: OTLPReceiver) -> Iterator[Cluster]:
    cluster, server = make_cluster(
        tmp_path,
        sqlite_url,
        latency=0.01,
        DSPYQ_TELEMETRY__OTLP_ENDPOINT=receiver.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",  # export within a tenth of a second of a span's end
    )
    try:
        yield cluster
    finally:
        cluster.stop()
        server.stop()


def test_one_job_is_one_trace_from_submit_to_each_lm_call(
    cluster: Cluster, receiver: OTLPReceiver
) -> None:
    cluster.fake_lm.answer_fields({"reasoning": "r", "answer": "Paris"})
    cluster.start_worker("t1", concurrency=2)
    settings = cluster.settings.model_copy(
        update={"telemetry": TelemetrySettings(otlp_endpoint=receiver.endpoint)}
    )
    with Client(settings) as client:
        job = client.submit(
            dspyq.ChainOfThought("question -> answer"), lm="openai/gpt-4o-mini", question="Q?"
        )
        assert job.result(timeout=30).answer == "Paris"
        tracing.flush()

    spans = receiver.wait_for(job.correlation_id, count=4)
    by_kind = {s.name.split(" ")[0]: s for s in spans}
    assert sorted(by_kind) == ["lm", "module", "submit", "task"], [s.name for s in spans]
    submit, task, module, lm = (by_kind[k] for k in ("submit", "task", "module", "lm"))

    # One trace, whose id is the correlation id, and one parent chain across processes.
    assert {s.trace_id for s in spans} == {job.correlation_id}
    assert submit.parent_id == ""
    assert task.parent_id == submit.span_id
    assert module.parent_id == task.span_id
    assert lm.parent_id == module.span_id
    assert submit.pid == os.getpid()
    assert task.pid == module.pid == lm.pid == cluster.workers["t1"].pid
    assert module.name == "module ChainOfThought.forward"
    assert lm.name == "lm openai/gpt-4o-mini"
    assert lm.attributes["gen_ai.usage.input_tokens"] > 0  # type: ignore[operator]
    assert not any(s.error for s in spans)


def test_a_failed_lm_call_marks_its_spans_as_errors(
    cluster: Cluster, receiver: OTLPReceiver
) -> None:
    cluster.env["DSPYQ_PROVIDERS__OPENAI__NUM_RETRIES"] = "0"
    cluster.fake_lm.fail_next(1, 500)
    cluster.start_worker("t2", concurrency=1)

    job = cluster.client.submit(dspyq.Predict("question -> answer"), lm="openai/m", question="q")
    with pytest.raises(dspyq.DspyqError):
        job.result(timeout=30)

    # This client does not trace: the worker's spans still form the job's trace.
    spans = receiver.wait_for(job.correlation_id, count=3)
    by_kind = {s.name.split(" ")[0]: s for s in spans}
    assert sorted(by_kind) == ["lm", "module", "task"]
    assert by_kind["lm"].error and by_kind["module"].error and by_kind["task"].error
    assert by_kind["task"].parent_id == f"{tracing.submit_span_id_for(job.correlation_id):016x}"

"""The fake server's fine-tuning API, read by the official ``openai`` SDK.

A fine-tune is an upload, a job, polls until the job ends, then completions for the
model the job made: each answer must parse as the SDK's own types.
"""

from __future__ import annotations

import io
import json
import time
from typing import Any

import pytest

from dspyq.testing import FakeLMServer

openai = pytest.importorskip("openai")

ROW = {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}
JSONL = b"".join(json.dumps(ROW).encode() + b"\n" for _ in range(10))


def client(server: FakeLMServer) -> Any:
    return openai.OpenAI(base_url=server.openai_base, api_key="sk-test", max_retries=0)


def wait_until_done(sdk: Any, job_id: str) -> Any:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        job = sdk.fine_tuning.jobs.retrieve(job_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.02)
    raise AssertionError("the job did not end")


def test_a_fine_tune_runs_through_the_sdk(fake_lm: FakeLMServer) -> None:
    fake_lm.configure(finetune_seconds=0.3)
    sdk = client(fake_lm)
    uploaded = sdk.files.create(file=("train.jsonl", io.BytesIO(JSONL)), purpose="fine-tune")
    assert isinstance(uploaded, openai.types.FileObject)
    assert uploaded.id.startswith("file-") and uploaded.bytes == len(JSONL)
    assert uploaded.purpose == "fine-tune" and uploaded.filename == "train.jsonl"
    assert fake_lm.state.finetunes.files[uploaded.id].content == JSONL
    assert sdk.files.retrieve(uploaded.id).id == uploaded.id

    job = sdk.fine_tuning.jobs.create(
        model="gpt-4o-mini", training_file=uploaded.id, hyperparameters={"n_epochs": 2}
    )
    assert isinstance(job, openai.types.fine_tuning.FineTuningJob)
    assert job.status == "validating_files" and job.fine_tuned_model is None
    assert job.hyperparameters.n_epochs == 2
    model = f"ft:gpt-4o-mini:dspyq::{job.id}"
    with pytest.raises(openai.NotFoundError):  # no such model before the job succeeds
        sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])

    seen = {sdk.fine_tuning.jobs.retrieve(job.id).status}
    done = wait_until_done(sdk, job.id)
    seen.add(done.status)
    assert done.status == "succeeded" and done.fine_tuned_model == model
    assert done.error is None and done.finished_at is not None
    events = sdk.fine_tuning.jobs.list_events(fine_tuning_job_id=job.id, limit=1)
    assert [e.message for e in events.data] == ["The job has successfully completed"]

    fake_lm.answer("4")
    answer = sdk.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "2+2?"}]
    )
    assert answer.choices[0].message.content == "4"
    assert model in [m.id for m in sdk.models.list().data]


def test_the_job_passes_through_running(fake_lm: FakeLMServer) -> None:
    fake_lm.configure(finetune_seconds=0.6)
    sdk = client(fake_lm)
    uploaded = sdk.files.create(file=("t.jsonl", io.BytesIO(JSONL)), purpose="fine-tune")
    job = sdk.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=uploaded.id)
    statuses = []
    while not statuses or statuses[-1] != "succeeded":
        statuses.append(sdk.fine_tuning.jobs.retrieve(job.id).status)
        time.sleep(0.02)
    assert list(dict.fromkeys(statuses)) == ["validating_files", "running", "succeeded"]


def test_validation_fails_a_job_as_openai_does(fake_lm: FakeLMServer) -> None:
    fake_lm.configure(finetune_seconds=0.05)
    sdk = client(fake_lm)
    short = sdk.files.create(
        file=("t.jsonl", io.BytesIO(JSONL[: len(JSONL) // 10])), purpose="fine-tune"
    )
    job = sdk.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=short.id)
    done = wait_until_done(sdk, job.id)
    assert done.status == "failed" and done.fine_tuned_model is None
    assert done.error.code == "invalid_training_file"
    assert "must have at least 10 examples" in done.error.message


def test_bad_requests_get_openai_errors(fake_lm: FakeLMServer) -> None:
    sdk = client(fake_lm)
    with pytest.raises(openai.BadRequestError, match="training_file"):
        sdk.fine_tuning.jobs.create(model="gpt-4o-mini", training_file="file-nope")
    uploaded = sdk.files.create(file=("t.jsonl", io.BytesIO(JSONL)), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError, match="Additional properties"):
        sdk.fine_tuning.jobs.create(
            model="gpt-4o-mini", training_file=uploaded.id, hyperparameters={"epochs": 1}
        )
    with pytest.raises(openai.NotFoundError):
        sdk.fine_tuning.jobs.retrieve("ftjob-nope")
    fake_lm.configure(api_key="sk-right")
    with pytest.raises(openai.AuthenticationError):
        sdk.files.create(file=("t.jsonl", io.BytesIO(JSONL)), purpose="fine-tune")

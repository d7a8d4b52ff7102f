"""OpenAI's fine-tuning API over the LM's own provider (its base URL, key and HTTP client).

The steps and the lines printed follow DSPy 3.4.1's OpenAI provider: save the data as
JSONL, upload it (``POST /files``, purpose ``fine-tune``), start a job
(``POST /fine_tuning/jobs``), poll it every ``finetune_poll_interval`` seconds (a
runtime setting, else the deployment setting ``DSPYQ_FINETUNE_POLL_INTERVAL``; DSPy's
fixed 20 by default) printing its newest event, and return the fine-tuned model's name
once it has succeeded.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx

from dspyq.core.context import setting
from dspyq.errors import ConfigurationError, DspyqError
from dspyq.lm.providers.errors import error_from_response, error_from_transport, malformed
from dspyq.settings import get_settings

if TYPE_CHECKING:
    from dspyq.lm.finetune import TrainingJob
    from dspyq.lm.providers.http import HTTPProvider

POLL_INTERVAL_KEY = "finetune_poll_interval"

# OpenAI's job statuses, as DSPy's TrainingStatus values.
_STATUS = {
    "validating_files": "pending",
    "queued": "pending",
    "running": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
}
TERMINAL = ("succeeded", "failed", "cancelled")


class OpenAIFineTuning:
    """The fine-tuning endpoints next to a provider's chat completions endpoint."""

    def __init__(self, provider: HTTPProvider, model: str) -> None:
        self.provider = provider
        self.model = model

    def _send(self, method: str, path: str, **options: Any) -> dict[str, Any]:
        config = self.provider.config
        url = config.api_base.rstrip("/") + path
        headers = {**self.provider.headers(), **config.headers}
        try:
            response = self.provider.http_client.request(
                method, url, headers=headers, timeout=config.timeout, **options
            )
            text = response.text
        except httpx.HTTPError as exc:
            raise error_from_transport(exc, config, self.model, url) from None
        if response.status_code >= 300:
            raise error_from_response(response, text, config, self.model)
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise malformed("the body is not a JSON object", config, self.model, url, 200, text)
        return body

    def upload(self, name: str, content: bytes) -> str:
        files = {"file": (name, content, "application/octet-stream")}
        return str(self._send("POST", "/files", files=files, data={"purpose": "fine-tune"})["id"])

    def start(self, file_id: str, model: str, hyperparameters: dict[str, Any]) -> str:
        body = {"model": model, "training_file": file_id, "hyperparameters": hyperparameters}
        return str(self._send("POST", "/fine_tuning/jobs", json=body)["id"])

    def retrieve(self, job_id: str) -> dict[str, Any]:
        return self._send("GET", f"/fine_tuning/jobs/{job_id}")

    def newest_event(self, job_id: str) -> dict[str, Any] | None:
        page = self._send("GET", f"/fine_tuning/jobs/{job_id}/events", params={"limit": 1})
        data = page.get("data") or []
        return data[0] if data else None

    def cancel(self, job_id: str | None, file_id: str | None) -> None:
        """Cancel a job that has not ended, then delete its training file (as DSPy)."""
        if job_id is not None:
            if self.status(job_id) in TERMINAL:
                raise DspyqError(
                    f"Jobs that are complete cannot be canceled. Job with ID {job_id} is done."
                )
            self._send("POST", f"/fine_tuning/jobs/{job_id}/cancel")
        if file_id is not None:
            self._send("DELETE", f"/files/{file_id}")

    def status(self, job_id: str | None) -> str:
        if job_id is None:
            print("There is no active job.")
            return "not_started"
        return _STATUS[self.retrieve(job_id)["status"]]


def finetune_openai(
    job: TrainingJob,
    provider: HTTPProvider,
    model: str,
    train_data: list[dict[str, Any]],
    train_data_format: Any,
    train_kwargs: dict[str, Any] | None,
) -> str:
    """Run one fine-tune to its end; the fine-tuned model's name (DSPy's steps and lines)."""
    from dspyq.lm.finetune import TrainDataFormat, TrainingStatus, save_data

    model = model.replace("openai/", "")
    api = OpenAIFineTuning(provider, model)
    job.api = api
    print("[OpenAI Provider] Validating the data format")
    if train_data_format not in (TrainDataFormat.CHAT, TrainDataFormat.COMPLETION):
        raise ConfigurationError(f"OpenAI does not support the data format {train_data_format}.")
    print("[OpenAI Provider] Saving the data to a file")
    data_path = save_data(train_data)
    print(f"[OpenAI Provider] Data saved to {data_path}")
    print("[OpenAI Provider] Uploading the data to the provider")
    job.provider_file_id = api.upload(data_path.name, data_path.read_bytes())
    print("[OpenAI Provider] Starting remote training")
    job.provider_job_id = api.start(job.provider_file_id, model, train_kwargs or {})
    print(f"[OpenAI Provider] Job started with the OpenAI Job ID {job.provider_job_id}")
    print("[OpenAI Provider] Waiting for training to complete")
    _wait(api, job.provider_job_id)
    print("[OpenAI Provider] Attempting to retrieve the trained model")
    status = TrainingStatus(api.status(job.provider_job_id))
    if status != TrainingStatus.succeeded:
        raise DspyqError(
            f"Job status is {status}. Must be {TrainingStatus.succeeded} to retrieve model."
        )
    finetuned = str(api.retrieve(job.provider_job_id)["fine_tuned_model"])
    print(f"[OpenAI Provider] Model retrieved: {finetuned}")
    return finetuned


def _wait(api: OpenAIFineTuning, job_id: str) -> None:
    """Poll until the job ends, printing the estimate once and each new event."""
    configured = setting(POLL_INTERVAL_KEY)
    interval = float(get_settings().finetune_poll_interval if configured is None else configured)
    done, event_id, reported = False, None, False
    while not done:
        if not reported:
            finish = api.retrieve(job_id).get("estimated_finish")
            if finish:
                remaining = datetime.fromtimestamp(finish) - datetime.now()
                print(f"[OpenAI Provider] The OpenAI estimated time remaining is: {remaining}")
                reported = True
        event = api.newest_event(job_id)
        if event and event.get("id") != event_id:
            stamp = datetime.fromtimestamp(event["created_at"])
            print(f"[OpenAI Provider] {stamp} {event.get('message')}")
            event_id = event.get("id")
        time.sleep(interval)
        done = api.status(job_id) in TERMINAL

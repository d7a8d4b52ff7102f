"""OpenAI's fine-tuning endpoints on the fake server: files, jobs, their events.

A real fine-tune uploads a JSONL file (``POST /v1/files``, multipart, purpose
``fine-tune``), starts a job on it (``POST /v1/fine_tuning/jobs``) and polls it
(``GET /v1/fine_tuning/jobs/{id}``, ``.../events``) until it ends. Here a job moves
``validating_files`` -> ``running`` -> ``succeeded`` over ``finetune_seconds`` (a
:class:`~dspyq.testing.fake_script.FakeConfig` key) and names its model
``ft:<base>:dspyq::<job id>``; a training file that is not chat JSONL, or has fewer
than ``finetune_min_examples`` examples, fails the job as OpenAI's validation does.
The completion endpoints answer a fine-tuned model once its job has succeeded.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from dspyq.testing.fake_script import FakeLMState

HYPERPARAMETERS = ("n_epochs", "batch_size", "learning_rate_multiplier")


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int

    def body(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
            "expires_at": None,
        }


@dataclass
class Job:
    id: str
    model: str
    training_file: str
    hyperparameters: dict[str, Any]
    created: float
    duration: float
    problem: str | None  # why validation fails the job, if it does
    cancelled: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)

    def status(self, now: float) -> str:
        elapsed = now - self.created
        if self.cancelled:
            return "cancelled"
        if elapsed < self.duration / 3:
            return "validating_files"
        if self.problem is not None:
            return "failed"
        return "running" if elapsed < self.duration else "succeeded"

    @property
    def fine_tuned_model(self) -> str:
        return f"ft:{self.model}:dspyq::{self.id}"

    def body(self, now: float) -> dict[str, Any]:
        status = self.status(now)
        done = status in ("succeeded", "failed", "cancelled")
        error = None
        if status == "failed":
            error = {"code": "invalid_training_file", "message": self.problem}
            error["param"] = "training_file"
        resolved = {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 1.8}
        resolved.update(self.hyperparameters)
        return {
            "id": self.id,
            "object": "fine_tuning.job",
            "created_at": int(self.created),
            "error": error,
            "fine_tuned_model": self.fine_tuned_model if status == "succeeded" else None,
            "finished_at": int(self.created + self.duration) if done else None,
            "hyperparameters": resolved if status != "validating_files" else self._asked(),
            "model": self.model,
            "organization_id": "org-dspyq",
            "result_files": [],
            "seed": 0,
            "status": status,
            "trained_tokens": None,
            "training_file": self.training_file,
            "validation_file": None,
            "estimated_finish": None if done else int(self.created + self.duration) + 1,
            "integrations": [],
            "metadata": None,
            "method": {"type": "supervised"},
        }

    def _asked(self) -> dict[str, Any]:
        return {name: self.hyperparameters.get(name, "auto") for name in HYPERPARAMETERS}

    def new_events(self, now: float) -> list[dict[str, Any]]:
        """The events so far, newest first (as the API lists them)."""
        status = self.status(now)
        messages = ["Validating training file: " + self.training_file]
        if status in ("running", "succeeded"):
            messages.append("Fine-tuning job started")
        if status == "succeeded":
            messages.append("The job has successfully completed")
        if status == "failed":
            messages.append(f"Training file validation failed: {self.problem}")
        while len(self.events) < len(messages):
            index = len(self.events)
            self.events.append(
                {
                    "object": "fine_tuning.job.event",
                    "id": f"ftevent-{self.id[6:]}{index}",
                    "created_at": int(self.created + self.duration * index / 3),
                    "level": "error" if status == "failed" and index == 1 else "info",
                    "message": messages[index],
                    "data": {},
                    "type": "message",
                }
            )
        return list(reversed(self.events))


def training_file_problem(content: bytes, min_examples: int) -> str | None:
    """Why OpenAI's validation would refuse this chat training file, or None."""
    lines = [line for line in content.decode("utf-8", "replace").splitlines() if line.strip()]
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except ValueError:
            return f"Invalid file format. Line {number} is not valid JSON."
        messages = record.get("messages") if isinstance(record, dict) else None
        if not isinstance(messages, list) or not messages:
            return f'Invalid file format. Line {number}, key "messages": a list is required.'
        if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
            return f"Invalid file format. Line {number}: no assistant message."
    if len(lines) < min_examples:
        return (
            f"Training file has {len(lines)} example(s), but must have at least "
            f"{min_examples} examples"
        )
    return None


class FineTuneStore:
    """Uploaded files and fine-tuning jobs, behind one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.files: dict[str, StoredFile] = {}
        self.jobs: dict[str, Job] = {}

    def clear(self) -> None:
        with self._lock:
            self.files.clear()
            self.jobs.clear()

    def add_file(self, filename: str, purpose: str, content: bytes) -> StoredFile:
        stored = StoredFile(
            f"file-{uuid.uuid4().hex[:24]}", filename, purpose, content, int(time.time())
        )
        with self._lock:
            self.files[stored.id] = stored
        return stored

    def add_job(
        self, model: str, training: StoredFile, hyper: dict[str, Any], state: FakeLMState
    ) -> Job:
        conf = state.config
        problem = training_file_problem(training.content, conf.finetune_min_examples)
        job = Job(
            f"ftjob-{uuid.uuid4().hex[:24]}",
            model,
            training.id,
            hyper,
            time.time(),
            conf.finetune_seconds,
            problem,
        )
        with self._lock:
            self.jobs[job.id] = job
        return job

    def succeeded_models(self) -> set[str]:
        now = time.time()
        with self._lock:
            return {j.fine_tuned_model for j in self.jobs.values() if j.status(now) == "succeeded"}


def _error(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> Response:
    body = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return JSONResponse({"error": body}, status_code=status)


def _unauthorized(state: FakeLMState, request: Request) -> Response | None:
    key = state.config.api_key
    if key is not None and request.headers.get("authorization") != f"Bearer {key}":
        return _error(401, "Incorrect API key provided.", code="invalid_api_key")
    return None


def finetune_routes(state: FakeLMState) -> list[Route]:
    """The starlette routes of the fine-tuning API over ``state.finetunes``."""
    store = state.finetunes

    def logged(request: Request, body: Any) -> dict[str, Any]:
        headers = {k.lower(): v for k, v in request.headers.items()}
        return state.log_request(request.method, request.url.path, headers, body, "openai")

    def finish(entry: dict[str, Any], response: Response, outcome: str) -> Response:
        state.finish_request(entry, response.status_code, outcome)
        return response

    async def upload(request: Request) -> Response:
        form = await request.form()
        upload_file: Any = form.get("file")
        purpose = form.get("purpose")
        content = await upload_file.read() if hasattr(upload_file, "read") else b""
        name = str(getattr(upload_file, "filename", None) or "upload")
        entry = logged(request, {"purpose": purpose, "filename": name, "bytes": len(content)})
        refused = _unauthorized(state, request)
        if refused is not None:
            return finish(entry, refused, "unauthorized")
        if not hasattr(upload_file, "read"):
            return finish(entry, _error(400, "'file' is a required property", "file"), "invalid")
        if purpose not in ("fine-tune", "batch", "assistants", "vision", "user_data", "evals"):
            message = f"'{purpose}' is not one of the supported purposes"
            return finish(entry, _error(400, message, "purpose"), "invalid")
        stored = store.add_file(name, str(purpose), content)
        return finish(entry, JSONResponse(stored.body()), "file")

    async def get_file(request: Request) -> Response:
        entry = logged(request, None)
        stored = store.files.get(request.path_params["file_id"])
        if stored is None:
            message = f"No such File object: {request.path_params['file_id']}"
            return finish(entry, _error(404, message, "id"), "failure:404")
        return finish(entry, JSONResponse(stored.body()), "file")

    async def delete_file(request: Request) -> Response:
        entry = logged(request, None)
        file_id = request.path_params["file_id"]
        if store.files.pop(file_id, None) is None:
            return finish(
                entry, _error(404, f"No such File object: {file_id}", "id"), "failure:404"
            )
        body = {"id": file_id, "object": "file", "deleted": True}
        return finish(entry, JSONResponse(body), "file")

    async def create_job(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        entry = logged(request, body)
        refused = _unauthorized(state, request) or _job_refusal(body, store, state)
        if refused is not None:
            return finish(entry, refused, "invalid")
        training = store.files[body["training_file"]]
        job = store.add_job(body["model"], training, dict(body.get("hyperparameters") or {}), state)
        return finish(entry, JSONResponse(job.body(time.time())), "fine_tuning_job")

    def find(request: Request) -> Job | None:
        return store.jobs.get(request.path_params["job_id"])

    def missing(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        return _error(404, f"Could not find fine tune job: {job_id}", "fine_tune_id")

    async def get_job(request: Request) -> Response:
        entry, job = logged(request, None), find(request)
        if job is None:
            return finish(entry, missing(request), "failure:404")
        return finish(entry, JSONResponse(job.body(time.time())), "fine_tuning_job")

    async def job_events(request: Request) -> Response:
        entry, job = logged(request, None), find(request)
        if job is None:
            return finish(entry, missing(request), "failure:404")
        limit = int(request.query_params.get("limit", 20))
        events = job.new_events(time.time())
        page = {"object": "list", "data": events[:limit], "has_more": len(events) > limit}
        return finish(entry, JSONResponse(page), "fine_tuning_events")

    async def cancel_job(request: Request) -> Response:
        entry, job = logged(request, None), find(request)
        if job is None:
            return finish(entry, missing(request), "failure:404")
        if job.status(time.time()) in ("succeeded", "failed", "cancelled"):
            message = f"Job has already completed: {job.id}"
            return finish(entry, _error(400, message), "invalid")
        job.cancelled = True
        return finish(entry, JSONResponse(job.body(time.time())), "fine_tuning_job")

    return [
        Route("/v1/files", upload, methods=["POST"]),
        Route("/v1/files/{file_id}", get_file, methods=["GET"]),
        Route("/v1/files/{file_id}", delete_file, methods=["DELETE"]),
        Route("/v1/fine_tuning/jobs", create_job, methods=["POST"]),
        Route("/v1/fine_tuning/jobs/{job_id}", get_job, methods=["GET"]),
        Route("/v1/fine_tuning/jobs/{job_id}/events", job_events, methods=["GET"]),
        Route("/v1/fine_tuning/jobs/{job_id}/cancel", cancel_job, methods=["POST"]),
    ]


def _job_refusal(body: Any, store: FineTuneStore, state: FakeLMState) -> Response | None:
    if not isinstance(body, dict):
        return _error(400, "the request body must be a JSON object")
    model, training = body.get("model"), body.get("training_file")
    if not isinstance(model, str) or not model:
        return _error(400, "Missing required parameter: 'model'.", "model")
    if not isinstance(training, str) or not training:
        return _error(400, "Missing required parameter: 'training_file'.", "training_file")
    models = state.config.models
    if models is not None and model not in models:
        message = f"Model {model} is not available for fine-tuning or does not exist."
        return _error(400, message, "model", "model_not_available")
    stored = store.files.get(training)
    if stored is None:
        return _error(400, f"invalid training_file: {training}", "training_file")
    if stored.purpose != "fine-tune":
        message = f"File {training} has purpose '{stored.purpose}', expected 'fine-tune'."
        return _error(400, message, "training_file")
    hyper = body.get("hyperparameters") or {}
    if not isinstance(hyper, dict):
        return _error(400, "'hyperparameters' must be an object", "hyperparameters")
    unknown = sorted(set(hyper) - set(HYPERPARAMETERS))
    if unknown:
        message = f"Additional properties are not allowed ({unknown[0]!r} was unexpected)"
        return _error(400, message, "hyperparameters")
    return None

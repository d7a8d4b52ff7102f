"""What client and workers agree on: task names, queue names and the JSON messages.

The client imports this module, never the task modules that run the work, so
submitting a job does not load the worker's store, LM clients or optimizers. Every
message is JSON validated on both ends, and never carries an API key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dspyq.core.example import Prediction
from dspyq.errors import InputError
from dspyq.masking import is_secret_key
from dspyq.program_ref import parse_program_ref
from dspyq.settings import PrivacyLevel, split_model

# --- task names ---------------------------------------------------------------------

EXECUTE_TASK = "dspyq.execute_module"
BATCH_TASK = "dspyq.execute_batch"
MULTIHOP_TASK = "dspyq.multihop.run"
EVALUATE_TASK = "dspyq.evaluate_example"
EVALUATE_BATCH_TASK = "dspyq.evaluate_batch"
RUN_TASK = "dspyq.optimize.run"
"""The coordinator of an optimization run, on :data:`OPTIMIZE_QUEUE`."""

# --- queues and headers -------------------------------------------------------------

OPTIMIZE_QUEUE = "dspyq.optimize"
LM_QUEUE_PREFIX = "dspyq.lm."


def lm_queue(provider: str) -> str:
    """The queue a provider's pool consumes: ``openai`` -> ``dspyq.lm.openai``."""
    return f"{LM_QUEUE_PREFIX}{provider}"


JOBS_HEADER = "dspyq_jobs"
"""Header of a batch message: how many jobs it carries (the worker's prefetch counts
them, see :mod:`dspyq.workers.prefetch`)."""

# --- streamed text (see dspyq.tasks.streaming) -----------------------------------------

CHUNK = "chunk"
END = "end"


def stream_key(key_prefix: str, task_id: str) -> str:
    """The Redis key of a job's stream, under the deployment's key prefix."""
    return f"{key_prefix}:stream:{task_id}"


# --- optimization runs --------------------------------------------------------------

DEFAULT_CANDIDATES_PER_ROUND = 4

# --- one execution ------------------------------------------------------------------

SECRET_KEYS = frozenset({"api_key", "api_base", "authorization", "x-api-key"})


def _keys(value: Any) -> list[str]:
    """Every dict key in ``value``, at any depth."""
    if isinstance(value, dict):
        return [k for k, v in value.items() for k in [str(k), *_keys(v)]]
    if isinstance(value, list | tuple):
        return [k for v in value for k in _keys(v)]
    return []


class ExecutionRequest(BaseModel):
    """One module execution: the program as JSON, its inputs and the LM to run it on.

    A saved program travels as ``program_ref`` (``"qa@production"``, ``"qa:3"``) with an
    empty ``program``: the worker resolves it when the execution starts, filling
    ``program`` with that version's spec and ``program_name`` / ``program_version``
    (which a client also sets for a program it knows to be a saved version).
    """

    model_config = ConfigDict(extra="forbid")

    program: dict[str, Any] = Field(default_factory=dict)
    program_ref: str | None = None
    program_name: str | None = None
    program_version: int | None = Field(default=None, ge=1)
    inputs: dict[str, Any]
    lm: str
    lm_kwargs: dict[str, Any] = Field(default_factory=dict)
    correlation_id: str
    parent_id: str | None = None
    fallbacks: list[str] = Field(default_factory=list)
    method: str = "forward"
    step: str | None = None
    # Publish the LM's text to a Redis stream as it arrives (dspyq.tasks.streaming).
    stream: bool = False
    # The submitter's dspyq.configure(max_parse_retries=N); None: the worker's setting.
    max_parse_retries: int | None = Field(default=None, ge=0)
    # The submitter's dspyq.context(privacy=...); the strictest of it, the pool's and the
    # deployment's level applies.
    privacy: PrivacyLevel | None = None

    @field_validator("lm_kwargs")
    @classmethod
    def _no_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Workers hold the keys; a message that carries one (at any depth, e.g. in
        # extra_headers) is refused on both ends. Only the key names are said.
        leaked = {k.lower() for k in _keys(value) if k.lower() in SECRET_KEYS or is_secret_key(k)}
        if leaked:
            raise ValueError(
                f"{sorted(leaked)} must not travel in a job; workers read them from settings"
            )
        return value

    @field_validator("program_ref")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(parse_program_ref(value))
        except InputError as exc:
            raise ValueError(exc.message) from None

    @model_validator(mode="after")
    def _has_program(self) -> ExecutionRequest:
        if not self.program and self.program_ref is None:
            raise ValueError("a job carries a program spec or a program reference")
        return self

    @property
    def resolved(self) -> bool:
        """The request carries its program's spec (a reference not resolved yet does not)."""
        return bool(self.program)

    @field_validator("lm", "fallbacks")
    @classmethod
    def _known_shape(cls, value: Any) -> Any:
        for model in [value] if isinstance(value, str) else value:
            split_model(model)
        return value

    @property
    def provider(self) -> str:
        return split_model(self.lm)[0]


class ExecutionResult(BaseModel):
    """What a finished execution returns through the result backend."""

    outputs: dict[str, Any]
    correlation_id: str
    lm: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    lm_calls: int = 0
    duration_ms: float = 0.0
    stale: bool = False
    """Some LM answer came from an expired cache entry: every provider was unavailable."""

    def prediction(self) -> Prediction:
        return Prediction(**self.outputs)


# --- many executions in one message (see dspyq.tasks.batch) ----------------------------

MIN_BATCHES = 8
"""A map is split into at least this many messages (when it has that many jobs), so a
small map still spreads over the pool's workers instead of landing on one."""


def batch_size(jobs: int, largest: int) -> int:
    """Jobs per message for a map of ``jobs``: at most ``largest``, at least one."""
    return max(1, min(largest, -(-jobs // MIN_BATCHES)))


@dataclass(frozen=True)
class BatchItem:
    """One job of a batch message: its task id and its execution request (and, for an
    example of an evaluation, its :class:`ExampleScoring` dict)."""

    task_id: str
    request: dict[str, Any]
    scoring: dict[str, Any] | None = None

    def to_json(self, request: dict[str, Any] | None = None) -> dict[str, Any]:
        job = {"task_id": self.task_id, "request": self.request if request is None else request}
        if self.scoring is not None:
            job["scoring"] = self.scoring
        return job


def batch_message(items: Sequence[BatchItem]) -> dict[str, Any]:
    """The keyword arguments of a batch message carrying ``items``.

    The program spec, the largest part of a request (an optimized program's demos can
    make it tens of kilobytes), is sent once for the batch when its jobs share it, not
    once per job: the message is encoded, stored and decoded that much smaller.
    """
    program = items[0].request.get("program") if items else None
    if not program or any(item.request.get("program") != program for item in items):
        return {"jobs": [item.to_json() for item in items]}
    jobs = [item.to_json(_without_program(item.request)) for item in items]
    return {"jobs": jobs, "program": program}


def _without_program(request: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in request.items() if key != "program"}


def batch_items(jobs: list[dict[str, Any]], program: dict[str, Any] | None) -> list[BatchItem]:
    """The jobs of a batch message, each with its program (the batch's, when shared)."""
    items = []
    for job in jobs:
        request = job["request"]
        if program is not None and "program" not in request:
            request = {**request, "program": program}  # one spec object for the batch
        items.append(BatchItem(str(job["task_id"]), request, job.get("scoring")))
    return items


# --- one example of a distributed evaluation (see dspyq.tasks.evaluate) ----------------


class ExampleScoring(BaseModel):
    """What, besides the execution itself, one example of an evaluation needs."""

    model_config = ConfigDict(extra="forbid")

    evaluation_id: str
    index: int
    metric: str
    example: dict[str, Any]
    input_keys: list[str]
    failure_score: float = 0.0
    hedge: bool = False
    """A second copy of a straggling example: the client records whichever ends first."""


class ExampleOutcome(BaseModel):
    """What one scored example returns: the outputs and the metric's own value, or the error."""

    index: int
    task_id: str
    outputs: dict[str, Any] | None = None
    score: bool | int | float | None = None
    error: dict[str, Any] | None = None

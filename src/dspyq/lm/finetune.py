"""``LM.finetune``: a fine-tuning job run in a thread, whose result is the fine-tuned LM.

As DSPy 3.4.1's ``LM.finetune``: the job is a :class:`concurrent.futures.Future`
(:class:`TrainingJob`) started at once; ``job.result()`` is a copy of the LM on the
fine-tuned model, or the exception that stopped the fine-tune (returned, not raised,
and logged). Fine-tuning goes through OpenAI's API, for ``openai/...`` and ``ft:...``
models (:mod:`dspyq.lm.providers.openai_finetune`); other providers refuse.
The training data is written as DSPy writes it: one compact JSON object per line,
UTF-8, keys in their order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from concurrent.futures import Future
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dspyq.core.context import bind_context
from dspyq.errors import ConfigurationError

if TYPE_CHECKING:
    from dspyq.lm.lm import LM
    from dspyq.lm.providers.openai_finetune import OpenAIFineTuning

__all__ = [
    "Finetunable",
    "TrainDataFormat",
    "TrainingJob",
    "TrainingStatus",
    "finetune_lm",
    "infer_data_format",
    "jsonl_bytes",
    "save_data",
]

logger = logging.getLogger(__name__)


class TrainingStatus(str, Enum):  # noqa: UP042 - str() is "TrainingStatus.x", as in DSPy
    not_started = "not_started"
    pending = "pending"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class TrainDataFormat(str, Enum):  # noqa: UP042 - str() as in DSPy
    CHAT = "chat"
    COMPLETION = "completion"
    GRPO_CHAT = "grpo_chat"


def infer_data_format(adapter: Any) -> TrainDataFormat:
    """Chat adapters (ChatAdapter and its subclasses) train on chat data; others cannot."""
    from dspyq.adapters.chat import ChatAdapter

    if isinstance(adapter, ChatAdapter):
        return TrainDataFormat.CHAT
    raise ConfigurationError(f"Could not infer the data format for: {adapter}")


def jsonl_bytes(data: list[dict[str, Any]]) -> bytes:
    """The training file: each record as compact UTF-8 JSON on its own line."""
    lines = (json.dumps(item, ensure_ascii=False, separators=(",", ":")) for item in data)
    return b"".join(line.encode("utf-8") + b"\n" for line in lines)


def finetune_directory() -> Path:
    """``DSPYQ_FINETUNEDIR``, else ``~/.dspyq_cache/finetune`` (created)."""
    given = os.environ.get("DSPYQ_FINETUNEDIR")
    path = Path(given) if given else Path.home() / ".dspyq_cache" / "finetune"
    path = path.expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_data(data: list[dict[str, Any]]) -> Path:
    """Write the training file under a name drawn from its content; its path."""
    content = jsonl_bytes(data)
    path = finetune_directory() / f"{hashlib.sha256(content).hexdigest()[:32]}.jsonl"
    path.write_bytes(content)
    return path


class TrainingJob(Future):
    """A running fine-tune; ``result()`` is the fine-tuned LM (or the error, returned)."""

    def __init__(
        self,
        thread: threading.Thread | None = None,
        model: str | None = None,
        train_data: list[dict[str, Any]] | None = None,
        train_data_format: TrainDataFormat | str | None = None,
        train_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.thread = thread
        self.model = model
        self.train_data = train_data
        self.train_data_format = train_data_format
        self.train_kwargs = train_kwargs or {}
        self.provider_file_id: str | None = None
        self.provider_job_id: str | None = None
        self.api: OpenAIFineTuning | None = None
        super().__init__()

    def status(self) -> TrainingStatus:
        """The provider's view of the job (``not_started`` before it has one)."""
        if self.api is None or self.provider_job_id is None:
            return TrainingStatus.not_started
        return TrainingStatus(self.api.status(self.provider_job_id))

    def cancel(self) -> bool:
        """Cancel the provider's job and delete its file, then this future (DSPy's order)."""
        if self.api is not None:
            self.api.cancel(self.provider_job_id, self.provider_file_id)
            self.provider_job_id = self.provider_file_id = None
        return super().cancel()


class Finetunable:
    """DSPy's fine-tuning surface of an LM: ``finetune``, and ``launch`` / ``kill``, which
    are no-ops for a model behind an HTTP API (DSPy's are too, but for local models).

    ``finetuning_model`` (the model to train, when not the one called),
    ``train_kwargs`` (the default hyperparameters) and ``launch_kwargs`` are constructor
    arguments, taken out of the request options and kept by ``copy``.
    """

    finetuning_model: str | None = None
    train_kwargs: dict[str, Any]
    launch_kwargs: dict[str, Any]

    def _take_finetune_args(self, options: dict[str, Any]) -> dict[str, Any]:
        self.finetuning_model = options.pop("finetuning_model", None)
        self.train_kwargs = options.pop("train_kwargs", None) or {}
        self.launch_kwargs = options.pop("launch_kwargs", None) or {}
        return self.finetune_settings()

    def finetune_settings(self) -> dict[str, Any]:
        """The three settings, as DSPy's saved LM state holds them."""
        return {
            "finetuning_model": self.finetuning_model,
            "launch_kwargs": self.launch_kwargs,
            "train_kwargs": self.train_kwargs,
        }

    def finetune(
        self,
        train_data: list[dict[str, Any]],
        train_data_format: TrainDataFormat | str | None,
        train_kwargs: dict[str, Any] | None = None,
    ) -> TrainingJob:
        """A :class:`TrainingJob`; ``.result()`` is the fine-tuned LM (see the module)."""
        return finetune_lm(self, train_data, train_data_format, train_kwargs)  # type: ignore[arg-type]

    def launch(self, launch_kwargs: dict[str, Any] | None = None) -> None:
        pass

    def kill(self, launch_kwargs: dict[str, Any] | None = None) -> None:
        pass


def finetune_lm(
    lm: LM,
    train_data: list[dict[str, Any]],
    train_data_format: TrainDataFormat | str | None,
    train_kwargs: dict[str, Any] | None = None,
) -> TrainingJob:
    """Start fine-tuning ``lm``'s model on ``train_data``; see the module docstring."""
    if lm.provider_name != "openai":
        raise ConfigurationError(
            f"Provider {lm.provider_name!r} does not support fine-tuning, please specify your "
            "provider by explicitly setting `provider` when creating the `dspy.LM` instance. "
            "For example, `dspy.LM('openai/gpt-4.1-mini-2025-04-14', "
            "provider=dspy.OpenAIProvider())`.",
            context={"model": lm.model, "provider": lm.provider_name, "features": ["finetuning"]},
        )
    job = TrainingJob(
        model=lm.finetuning_model or lm.model,
        train_data=train_data,
        train_data_format=train_data_format,
        train_kwargs=train_kwargs or lm.train_kwargs,
    )
    # The job's thread sees the caller's settings (poll interval, HTTP client ...).
    job.thread = threading.Thread(target=bind_context(_run), args=(lm, job), daemon=True)
    job.thread.start()
    return job


def _run(lm: LM, job: TrainingJob) -> None:
    from dspyq.lm.providers.openai_finetune import finetune_openai

    try:
        model = finetune_openai(
            job,
            lm.provider,
            str(job.model),
            list(job.train_data or []),
            job.train_data_format,
            job.train_kwargs,
        )
        outcome: Any = lm.copy(model=model)
    except Exception as error:
        logger.error(error)
        outcome = error
    if not job.cancelled():  # a cancelled future takes no result (DSPy's thread raises here)
        job.set_result(outcome)

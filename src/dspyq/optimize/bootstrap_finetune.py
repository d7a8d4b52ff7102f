"""BootstrapFinetune: fine-tune each predictor's LM on the teacher's successful traces.

As DSPy 3.4.1's: the teacher (or each of a list of teachers, else the student itself)
runs over the trainset with tracing on (:func:`~dspyq.optimize.trace_data.bootstrap_trace_data`);
with a metric only the traces it passes are kept. Each traced predictor call becomes a
chat record through the adapter's ``format_finetune_data``; the records are shuffled
with ``random.Random(0)`` and one fine-tuning job (:meth:`LM.finetune`) runs per LM
(``multitask``, the default) or per predictor. The student is changed in place, as in
DSPy: its predictors get the fine-tuned LMs (and lose their demos with
``exclude_demos``), and it is returned.

``train_kwargs`` and ``adapter`` are kept as given (constructor parameters stay
attributes); a dict whose keys are all LMs gives each LM its own value, anything else
applies to every LM, as DSPy reads them.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from dspyq.adapters.chat import ChatAdapter
from dspyq.core.context import current
from dspyq.core.example import Example
from dspyq.core.module import Module
from dspyq.errors import ConfigurationError
from dspyq.lm.finetune import infer_data_format
from dspyq.lm.lm import LM
from dspyq.optimize.evaluate import Metric
from dspyq.optimize.finetune_programs import all_predictors_have_lms, prepare_teacher
from dspyq.optimize.teleprompter import Teleprompter
from dspyq.optimize.trace_data import bootstrap_trace_data

__all__ = ["BootstrapFinetune", "build_call_data_from_trace"]

logger = logging.getLogger(__name__)

DEFAULT_NUM_THREADS = 8  # DSPy's settings.num_threads


def value_for_lm(value: Any, lm: Any) -> Any:
    """``value[lm]`` when ``value`` is a non-empty dict keyed only by LMs, else ``value``."""
    if value and isinstance(value, dict) and all(isinstance(key, LM) for key in value):
        return value[lm]
    return value


def build_call_data_from_trace(
    trace: list[Any], pred_ind: int, adapter: Any, exclude_demos: bool = False
) -> dict[str, list[Any]]:
    """The chat record of the ``pred_ind``-th call in ``trace``."""
    predictor, inputs, outputs = trace[pred_ind]
    demos = [] if exclude_demos else predictor.demos
    return adapter.format_finetune_data(
        signature=predictor.signature, demos=demos, inputs=inputs, outputs=outputs
    )


class BootstrapFinetune(Teleprompter):
    """``BootstrapFinetune(metric).compile(student, trainset=...)``; see the module docstring."""

    def __init__(
        self,
        metric: Metric | None = None,
        multitask: bool = True,
        train_kwargs: dict[str, Any] | dict[LM, dict[str, Any]] | None = None,
        adapter: Any = None,
        exclude_demos: bool = False,
        num_threads: int | None = None,
    ) -> None:
        self.metric = metric
        self.multitask = multitask
        self.train_kwargs = train_kwargs
        self.adapter = adapter
        self.exclude_demos = exclude_demos
        self.num_threads = num_threads

    def compile(  # type: ignore[override]
        self,
        student: Module,
        trainset: list[Example],
        teacher: Module | list[Module] | None = None,
    ) -> Module:
        logger.info("Preparing the student and teacher programs...")
        all_predictors_have_lms(student)  # DSPy calls it and drops the answer

        logger.info("Bootstrapping data...")
        teachers = teacher if isinstance(teacher, list) else [teacher]
        teachers = [prepare_teacher(student, t) for t in teachers]
        num_threads = self.num_threads or current().get("num_threads") or DEFAULT_NUM_THREADS
        trace_data: list[dict[str, Any]] = []
        for program in teachers:
            trace_data += bootstrap_trace_data(
                program=program, dataset=trainset, metric=self.metric, num_threads=num_threads
            )

        logger.info("Preparing the train data...")
        key_to_data: dict[tuple[Any, int | None], dict[str, Any]] = {}
        for pred_ind, pred in enumerate(student.predictors()):
            data_pred_ind = None if self.multitask else pred_ind
            if pred.lm is None:
                raise ConfigurationError(
                    f"Predictor {pred_ind} does not have an LM assigned. "
                    "Please ensure the module's predictors have their LM set before "
                    "fine-tuning. You can set it using: your_module.set_lm(your_lm)"
                )
            key = (pred.lm, data_pred_ind)
            if key not in key_to_data:
                train_data, data_format = self._prepare_finetune_data(
                    trace_data=trace_data, lm=pred.lm, pred_ind=data_pred_ind
                )
                logger.info(
                    f"Using {len(train_data)} data points for fine-tuning the model: "
                    f"{pred.lm.model}"
                )
                key_to_data[key] = {
                    "lm": pred.lm,
                    "train_data": train_data,
                    "train_data_format": data_format,
                    "train_kwargs": value_for_lm(self.train_kwargs or {}, pred.lm),
                }

        logger.info("Starting LM fine-tuning...")
        if len(key_to_data) > num_threads:
            raise ConfigurationError(
                "BootstrapFinetune requires `num_threads` to be bigger than or equal to the "
                f"number of fine-tuning jobs. There are {len(key_to_data)} fine-tuning jobs to "
                f"start, but the number of threads is: {num_threads}! If the `multitask` flag "
                "is set to False, the number of fine-tuning jobs will be equal to the number "
                "of predictors in the student program. If the `multitask` flag is set to True, "
                "the number of fine-tuning jobs will be equal to: 1 if there is only a context "
                "LM, or the number of unique LMs attached to the predictors in the student "
                "program. In any case, the number of fine-tuning jobs will be less than or "
                "equal to the number of predictors."
            )
        logger.info(f"{len(key_to_data)} fine-tuning job(s) to start")
        key_to_lm = self.finetune_lms(key_to_data)

        logger.info("Updating the student program with the fine-tuned LMs...")
        for pred_ind, pred in enumerate(student.predictors()):
            key = (pred.lm, None if self.multitask else pred_ind)
            finetuned = key_to_lm[key]
            if isinstance(finetuned, Exception):
                raise RuntimeError(f"Finetuned LM for predictor {pred_ind} failed.") from finetuned
            pred.lm = finetuned
            pred.demos = [] if self.exclude_demos else pred.demos

        logger.info("BootstrapFinetune has finished compiling the student program")
        student._compiled = True
        return student

    @staticmethod
    def finetune_lms(finetune_dict: dict[Any, dict[str, Any]]) -> dict[Any, Any]:
        """Start every job, then wait for each; a failed job's error is raised."""
        num_jobs = len(finetune_dict)
        logger.info(f"Starting {num_jobs} fine-tuning job(s)...")
        key_to_job = {}
        for key, finetune_kwargs in finetune_dict.items():
            lm = finetune_kwargs.pop("lm")
            logger.info(
                "Calling lm.kill() on the LM to be fine-tuned to free up resources. This won't "
                "have any effect if the LM is not running."
            )
            lm.kill()
            key_to_job[key] = lm.finetune(**finetune_kwargs)

        key_to_lm = {}
        for ind, (key, job) in enumerate(key_to_job.items()):
            result = job.result()
            if isinstance(result, Exception):
                raise result
            key_to_lm[key] = result
            job.thread.join()
            logger.info(f"Job {ind + 1}/{num_jobs} is done")
        return key_to_lm

    def _prepare_finetune_data(
        self, trace_data: list[dict[str, Any]], lm: Any, pred_ind: int | None = None
    ) -> tuple[list[dict[str, Any]], Any]:
        if self.metric:
            logger.info(f"Collected data for {len(trace_data)} examples")
            trace_data = [d for d in trace_data if d["score"]]
            logger.info(f"After filtering with the metric, {len(trace_data)} examples remain")

        adapter = value_for_lm(self.adapter, lm) or current().get("adapter") or ChatAdapter()
        data_format = infer_data_format(adapter)
        data = []
        for item in trace_data:
            for trace_pred_ind, _ in enumerate(item["trace"]):
                if pred_ind is None or trace_pred_ind == pred_ind:
                    data.append(
                        build_call_data_from_trace(
                            trace=item["trace"],
                            pred_ind=trace_pred_ind,
                            adapter=adapter,
                            exclude_demos=self.exclude_demos,
                        )
                    )
        random.Random(0).shuffle(data)
        return data, data_format

"""The bridge between the ``gepa`` engine and a dspyq program, as DSPy 3.4.1's ``DspyAdapter``.

A GEPA candidate is ``{predictor name: instructions}``. The adapter builds the program a
candidate describes, scores it on a batch (with traces when the engine will reflect),
turns traces into each predictor's reflective examples (its inputs, outputs and the
metric's feedback) and asks the reflection LM for new instructions.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gepa import EvaluationBatch

from dspyq.adapters.chat import ChatAdapter
from dspyq.adapters.json_adapter import JSONAdapter
from dspyq.core.context import context, current
from dspyq.core.example import Example, Prediction
from dspyq.core.module import Module
from dspyq.core.parallel import run_parallel
from dspyq.core.signature import InputField, OutputField, Signature
from dspyq.core.types import History
from dspyq.errors import AdapterParseError

__all__ = ["DspyqAdapter", "FailedPrediction", "InstructionProposer", "ProposeInstruction"]

logger = logging.getLogger(__name__)

_MISMATCH = (
    "The score returned by the metric with pred_name is different from the overall metric "
    "score. This can indicate 2 things: Either the metric is non-deterministic (e.g., "
    "LLM-as-judge, Semantic score, etc.) or the metric returned a score specific to pred_name "
    "that differs from the module level score. Currently, GEPA does not support predictor "
    "level scoring (support coming soon), and only requires a feedback text to be provided, "
    "which can be specific to the predictor or program level. GEPA will ignore the differing "
    "score returned, and instead use module level score. You can safely ignore this warning "
    "if using a semantic metric, however, if this mismatch is caused due to predictor "
    "scoring, please return module-level scores. To disable this warning, set "
    "warn_on_score_mismatch=False."
)


@dataclass
class FailedPrediction:
    """A predictor call whose answer did not parse: the raw text and the score it earns."""

    completion_text: str
    format_reward: float | None = None


class ProposeInstruction(Signature):
    """I provided an assistant with instructions to perform a task for me. You are given those instructions, along with examples of different task inputs provided to the assistant, the assistant's response for each of them, and some feedback on how the assistant's response could be better.

    Your task is to write a new instruction for the assistant.

    Read the inputs carefully and identify the input format and infer detailed task description about the task I wish to solve with the assistant.

    Read all the assistant responses and the corresponding feedback. Identify all niche and domain specific factual information about the task and include it in the instruction, as a lot of it may not be available to the assistant in the future. The assistant may have utilized a generalizable strategy to solve the task, if so, include that in the instruction as well."""

    current_instruction: str = InputField(desc="The instructions I provided to the assistant.")
    examples_with_feedback: list[dict[str, Any]] = InputField(
        desc="Task inputs provided to the assistant, the assistant's response for each, "
        "and feedback on how the response could be better."
    )
    new_instruction: str = OutputField(desc="The new instruction for the assistant.")


class InstructionProposer:
    """GEPA's default proposer: one ``ProposeInstruction`` call (JSON adapter) per component.

    DSPy's takes options (skills, extra instructions, a length limit ...); this one is
    its default configuration only.
    """

    def __init__(self) -> None:
        from dspyq.core.predict import Predict

        self.adapter = JSONAdapter()
        self.propose = Predict(ProposeInstruction)

    def __call__(
        self,
        candidate: Mapping[str, str],
        reflective_dataset: Mapping[str, Sequence[Mapping[str, Any]]],
        components_to_update: list[str],
    ) -> dict[str, str]:
        results: dict[str, str] = {}
        for name in components_to_update:
            if name not in candidate or name not in reflective_dataset:
                continue
            with context(adapter=self.adapter):
                prediction = self.propose(
                    current_instruction=candidate[name],
                    examples_with_feedback=[dict(e) for e in reflective_dataset[name]],
                )
            draft = str(prediction.new_instruction).strip()
            if not draft:
                raise ValueError(
                    f"The reflection LM returned an empty instruction for component {name!r}."
                )
            results[name] = draft
        return results


class DspyqAdapter:
    """What the ``gepa`` engine calls (its ``GEPAAdapter`` protocol); see the module docstring."""

    def __init__(
        self,
        student: Module,
        metric_fn: Callable[..., Any],
        feedback_map: Mapping[str, Callable[..., Any]],
        *,
        failure_score: float = 0.0,
        num_threads: int | None = None,
        add_format_failure_as_feedback: bool = False,
        rng: random.Random | None = None,
        reflection_lm: Any = None,
        instruction_proposer: Callable[..., dict[str, str]] | None = None,
        warn_on_score_mismatch: bool = True,
    ) -> None:
        self.student = student
        self.metric_fn = metric_fn
        self.feedback_map = feedback_map
        self.failure_score = failure_score
        self.num_threads = num_threads
        self.add_format_failure_as_feedback = add_format_failure_as_feedback
        self.rng = rng or random.Random(0)
        self.reflection_lm = reflection_lm
        self.builtin_proposer = instruction_proposer is None
        self.instruction_proposer = instruction_proposer or InstructionProposer()
        self.warn_on_score_mismatch = warn_on_score_mismatch

    # --- the engine's calls ---------------------------------------------------------

    def build_program(self, candidate: Mapping[str, str]) -> Module:
        program = self.student.deepcopy()
        for name, predictor in program.named_predictors():
            if name in candidate:
                predictor.signature = predictor.signature.with_instructions(candidate[name])
        return program

    def evaluate(
        self, batch: list[Example], candidate: dict[str, str], capture_traces: bool = False
    ) -> EvaluationBatch:
        program = self.build_program(candidate)
        threads = self.num_threads or current().get("num_threads") or 8
        runs, _, _ = run_parallel(
            lambda item: self._run(program, item[1], item[0], capture_traces),
            list(enumerate(batch)),
            num_threads=threads,
            max_errors=len(batch) * 100,
        )
        outputs = [run["prediction"] if run else None for run in runs]
        raw = [run["score"] if run else None for run in runs]
        trajectories = [run for run in runs if run] if capture_traces else None
        scores, objectives = [], []
        for value in raw:
            score, objective = value, {}
            if isinstance(value, Prediction):
                score, objective = value.score, dict(value.get("objective_scores") or {})
            scores.append(self.failure_score if score is None else score)
            objectives.append(objective)
        return EvaluationBatch(
            outputs=outputs,
            scores=scores,
            trajectories=trajectories,
            objective_scores=objectives if any(objectives) else None,
        )

    def _run(
        self, program: Module, example: Example, index: int, with_trace: bool
    ) -> dict[str, Any] | None:
        """One example: its prediction, trace and score (``None`` if the program raised)."""
        with context(trace=[]):
            try:
                prediction: Any = program(**example.inputs())
            except AdapterParseError as error:
                if not with_trace or error.parsed_result:
                    return None  # DSPy drops these (scored as failures)
                prediction = FailedPrediction(error.lm_response or "", self.failure_score)
                failed = next(
                    (p for p in program.predictors() if p.signature.equals(error.signature)),
                    None,
                )
                if failed is None:
                    return None
                trace = list(current().trace or [])
                trace.append((failed, dict(example.inputs().items()), prediction))
            except Exception as error:
                logger.debug("example failed: %s", error)
                return None
            else:
                trace = list(current().trace or [])
        if isinstance(prediction, FailedPrediction):
            score: Any = prediction.format_reward or self.failure_score
        elif with_trace:
            score = self.metric_fn(example, prediction, trace)
        else:
            score = self.metric_fn(example, prediction)
        return {
            "example_ind": index,
            "example": example,
            "prediction": prediction,
            "trace": trace,
            "score": score,
        }

    def make_reflective_dataset(
        self,
        candidate: dict[str, str],
        eval_batch: EvaluationBatch,
        components_to_update: list[str],
    ) -> dict[str, list[dict[str, Any]]]:
        program = self.build_program(candidate)
        found: dict[str, list[dict[str, Any]]] = {}
        for name in components_to_update:
            module = dict(program.named_predictors()).get(name)
            if module is None:
                raise AssertionError(f"Predictor not found: {name}")
            items = [
                item
                for data in eval_batch.trajectories or []
                if (item := self._reflective_example(name, module, data)) is not None
            ]
            if not items:
                logger.warning(f"  No valid reflective examples found for {name}")
                continue
            found[name] = items
        if not found:
            raise Exception("No valid predictions found for any module.")
        return found

    def _reflective_example(
        self, name: str, module: Any, data: dict[str, Any]
    ) -> dict[str, Any] | None:
        trace, prediction = data["trace"], data["prediction"]
        module_score = data["score"]
        if hasattr(module_score, "score"):
            module_score = module_score["score"]
        calls = [t for t in trace if t[0].signature.equals(module.signature)]
        if not self.add_format_failure_as_feedback:
            calls = [t for t in calls if not isinstance(t[2], FailedPrediction)]
        if not calls:
            return None
        selected = next((t for t in calls if isinstance(t[2], FailedPrediction)), None)
        if selected is None:
            if isinstance(prediction, FailedPrediction):
                return None
            selected = self.rng.choice(calls)
        inputs, outputs = selected[1], selected[2]
        shown_in: dict[str, Any] = {}
        history_keys = [k for k, v in inputs.items() if isinstance(v, History)]
        if history_keys:
            history = inputs[history_keys[0]]
            shown_in["Context"] = history if self.builtin_proposer else _history_text(history)
        for key, value in inputs.items():
            if key not in history_keys:
                shown_in[key] = value if self.builtin_proposer else str(value)
        if isinstance(outputs, FailedPrediction):
            shown_out: Any = (
                "Couldn't parse the output as per the expected output format. The model's raw "
                f"response was:\n```\n{outputs.completion_text}\n```\n\n"
            )
            structure = "".join(
                f"{m['role']}: {m['content']}\n"
                for m in ChatAdapter().format(module.signature, [], {})
            )
            feedback = "Your output failed to parse. Follow this structure:\n" + structure
            return {"Inputs": shown_in, "Generated Outputs": shown_out, "Feedback": feedback}
        shown_out = {k: v if self.builtin_proposer else str(v) for k, v in outputs.items()}
        given = self.feedback_map[name](
            predictor_output=outputs,
            predictor_inputs=inputs,
            module_inputs=data["example"],
            module_outputs=prediction,
            captured_trace=trace,
        )
        if given["score"] != module_score and self.warn_on_score_mismatch:
            logger.warning(_MISMATCH)
            self.warn_on_score_mismatch = False
        return {"Inputs": shown_in, "Generated Outputs": shown_out, "Feedback": given["feedback"]}

    def propose_new_texts(
        self,
        candidate: dict[str, str],
        reflective_dataset: dict[str, list[dict[str, Any]]],
        components_to_update: list[str],
    ) -> dict[str, str]:
        with context(lm=self.reflection_lm or current().lm):
            return self.instruction_proposer(
                candidate=candidate,
                reflective_dataset=reflective_dataset,
                components_to_update=components_to_update,
            )

    def get_adapter_state(self) -> dict[str, Any]:
        return {"rng_state": self.rng.getstate()}

    def set_adapter_state(self, state: dict[str, Any]) -> None:
        if "rng_state" in state:
            self.rng.setstate(state["rng_state"])

    def stripped_lm_call(self, prompt: str) -> list[str]:
        """The reflection LM's answers as text (a dict answer gives its ``text``)."""
        texts = []
        for output in self.reflection_lm(prompt):
            if isinstance(output, str):
                texts.append(output)
            elif isinstance(output, dict):
                if "text" not in output:
                    raise KeyError("Missing 'text' field in the output from the base LM!")
                texts.append(output["text"])
            else:
                raise TypeError("Unexpected output type from the base LM! Expected str or dict")
        return texts


def _history_text(history: Any) -> str:
    lines = "".join(f"  {i}: {message}\n" for i, message in enumerate(history.messages))
    return f"```json\n{lines}```"

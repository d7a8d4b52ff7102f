"""GEPA: reflective prompt evolution, as DSPy 3.4.1's ``dspy.GEPA``, on the ``gepa`` engine.

The engine keeps a pool of candidates (instructions per predictor) with their scores on
every validation example; each iteration it picks a candidate (from the Pareto front by
default), runs it with traces on a mini-batch of ``reflection_minibatch_size`` training
examples, has the reflection LM rewrite one predictor's instructions from the metric's
feedback, and keeps the child if it scores better on the same mini-batch (then scores
it on the whole valset). ``use_merge`` also tries crossing two lineages. It stops after
the budget: ``auto`` ("light" / "medium" / "heavy"), ``max_full_evals`` or
``max_metric_calls``, exactly one of them.

The metric is ``metric(gold, pred, trace, pred_name, pred_trace)``: a number, or a
``Prediction(score=..., feedback=...)``; GEPA asks it for feedback on one predictor by
passing that predictor's name and calls. The program for the best candidate is returned;
with ``track_stats=True`` it carries ``detailed_results`` (:class:`DspyGEPAResult`).

Unlike DSPy: ``dspy.Flex`` code components, ``code_proposer`` and the options of DSPy's
``InstructionProposer`` (skills, length limits) are not supported; a custom
``instruction_proposer`` callable is. Runs in this process only.
"""

from __future__ import annotations

import inspect
import logging
import math
import random
from dataclasses import dataclass
from typing import Any, Literal

from dspyq.core.callbacks import with_callbacks
from dspyq.core.example import Example, Prediction
from dspyq.core.module import Module
from dspyq.optimize.gepa_adapter import DspyqAdapter
from dspyq.optimize.teleprompter import Teleprompter

__all__ = ["AUTO_RUN_SETTINGS", "GEPA", "DspyGEPAResult"]

logger = logging.getLogger(__name__)

AUTO_RUN_SETTINGS = {"light": {"n": 6}, "medium": {"n": 12}, "heavy": {"n": 18}}


@dataclass(frozen=True)
class DspyGEPAResult:
    """The run's candidates as programs, their lineage and their validation scores."""

    candidates: list[Module]
    parents: list[list[int | None]]
    val_aggregate_scores: list[float]
    val_subscores: list[dict[Any, float]]
    per_val_instance_best_candidates: dict[Any, set[int]]
    discovery_eval_counts: list[int]
    best_outputs_valset: dict[Any, list[tuple[int, Prediction]]] | None = None
    total_metric_calls: int | None = None
    num_full_val_evals: int | None = None
    log_dir: str | None = None
    seed: int | None = None
    val_aggregate_subscores: list[dict[str, float]] | None = None
    per_objective_best_candidates: dict[str, set[int]] | None = None
    objective_pareto_front: dict[str, float] | None = None

    @property
    def best_idx(self) -> int:
        scores = self.val_aggregate_scores
        return max(range(len(scores)), key=lambda i: scores[i])

    @property
    def best_candidate(self) -> Module:
        return self.candidates[self.best_idx]

    @staticmethod
    def from_gepa_result(result: Any, adapter: DspyqAdapter) -> DspyGEPAResult:
        return DspyGEPAResult(
            candidates=[adapter.build_program(c) for c in result.candidates],
            parents=result.parents,
            val_aggregate_scores=result.val_aggregate_scores,
            val_subscores=result.val_subscores,
            per_val_instance_best_candidates=result.per_val_instance_best_candidates,
            discovery_eval_counts=result.discovery_eval_counts,
            best_outputs_valset=result.best_outputs_valset,
            total_metric_calls=result.total_metric_calls,
            num_full_val_evals=result.num_full_val_evals,
            log_dir=result.run_dir,
            seed=result.seed,
            val_aggregate_subscores=result.val_aggregate_subscores,
            per_objective_best_candidates=result.per_objective_best_candidates,
            objective_pareto_front=result.objective_pareto_front,
        )


class _LoggerAdapter:
    def __init__(self, target: logging.Logger) -> None:
        self.logger = target

    def log(self, message: str) -> None:
        self.logger.info(message)


class GEPA(Teleprompter):
    """``GEPA(metric, auto="light", reflection_lm=lm).compile(student, trainset=...)``."""

    def __init__(
        self,
        metric: Any,
        *,
        auto: Literal["light", "medium", "heavy"] | None = None,
        max_full_evals: int | None = None,
        max_metric_calls: int | None = None,
        reflection_minibatch_size: int = 3,
        candidate_selection_strategy: Literal["pareto", "current_best"] = "pareto",
        reflection_lm: Any = None,
        skip_perfect_score: bool = True,
        add_format_failure_as_feedback: bool = False,
        instruction_proposer: Any = None,
        code_proposer: Any = None,
        component_selector: Any = "round_robin",
        use_merge: bool = True,
        max_merge_invocations: int | None = 5,
        num_threads: int | None = None,
        failure_score: float = 0.0,
        perfect_score: float = 1.0,
        log_dir: str | None = None,
        track_stats: bool = False,
        use_wandb: bool = False,
        wandb_api_key: str | None = None,
        wandb_init_kwargs: dict[str, Any] | None = None,
        track_best_outputs: bool = False,
        warn_on_score_mismatch: bool = True,
        use_mlflow: bool = False,
        seed: int | None = 0,
        gepa_kwargs: dict[str, Any] | None = None,
    ) -> None:
        try:
            inspect.signature(metric).bind(None, None, None, None, None)
        except TypeError as error:
            raise TypeError(
                "GEPA metric must accept five arguments: (gold, pred, trace, pred_name, "
                "pred_trace). See https://dspy.ai/api/optimizers/GEPA for details."
            ) from error
        budgets = (max_metric_calls is not None) + (max_full_evals is not None) + (auto is not None)
        if budgets != 1:  # DSPy asserts these
            raise AssertionError(
                "Exactly one of max_metric_calls, max_full_evals, auto must be set. "
                f"You set max_metric_calls={max_metric_calls}, "
                f"max_full_evals={max_full_evals}, "
                f"auto={auto}."
            )
        if reflection_lm is None and instruction_proposer is None:
            raise AssertionError(
                "GEPA requires a reflection language model, or custom instruction proposer to "
                "be provided. Typically, you can use `dspy.LM(model='gpt-5', temperature=1.0, "
                "max_tokens=32000)` to get a good reflection model. Reflection LM is used by "
                "GEPA to reflect on the behavior of the program and propose new instructions, "
                "and will benefit from a strong model. "
            )
        if track_best_outputs and not track_stats:
            raise AssertionError("track_stats must be True if track_best_outputs is True.")
        if code_proposer is not None:
            raise NotImplementedError("dspyq's GEPA has no dspy.Flex code components")
        self.metric = self.metric_fn = metric
        self.auto = auto
        self.max_full_evals = max_full_evals
        self.max_metric_calls = max_metric_calls
        self.reflection_minibatch_size = reflection_minibatch_size
        self.candidate_selection_strategy = candidate_selection_strategy
        self.reflection_lm = reflection_lm
        self.skip_perfect_score = skip_perfect_score
        self.add_format_failure_as_feedback = add_format_failure_as_feedback
        self.instruction_proposer = self.custom_instruction_proposer = instruction_proposer
        self.code_proposer = self.custom_code_proposer = code_proposer
        self.component_selector = component_selector
        self.use_merge = use_merge
        self.max_merge_invocations = max_merge_invocations
        self.num_threads = num_threads
        self.failure_score = failure_score
        self.perfect_score = perfect_score
        self.log_dir = log_dir
        self.track_stats = track_stats
        self.use_wandb = use_wandb
        self.wandb_api_key = wandb_api_key
        self.wandb_init_kwargs = wandb_init_kwargs
        self.track_best_outputs = track_best_outputs
        self.warn_on_score_mismatch = warn_on_score_mismatch
        self.use_mlflow = use_mlflow
        self.seed = seed
        self.gepa_kwargs = dict(gepa_kwargs or {})
        if self.gepa_kwargs.get("max_reflection_cost") is not None:
            raise ValueError("max_reflection_cost is not supported by dspy.GEPA yet.")
        if "reflection_prompt_template" in self.gepa_kwargs:
            raise ValueError(
                "reflection_prompt_template cannot be passed via gepa_kwargs when using "
                "dspy.GEPA. DspyAdapter implements its own propose_new_texts, so "
                "reflection_prompt_template is unused. To customize the reflection prompt, "
                "pass instruction_proposer=InstructionProposer(base_instructions=...) instead."
            )

    def auto_budget(
        self,
        num_preds: int,
        num_candidates: int,
        valset_size: int,
        minibatch_size: int = 35,
        full_eval_steps: int = 5,
    ) -> int:
        """Metric calls for ``auto``: the valset, the trials' mini-batches and the periodic
        full evaluations, as DSPy counts them."""
        trials = int(max(2 * (num_preds * 2) * math.log2(num_candidates), 1.5 * num_candidates))
        if trials < 0 or valset_size < 0 or minibatch_size < 0:
            raise ValueError("num_trials, valset_size, and minibatch_size must be >= 0.")
        if full_eval_steps < 1:
            raise ValueError("full_eval_steps must be >= 1.")
        total = valset_size + num_candidates * 5 + trials * minibatch_size
        if trials == 0:
            return total
        periodic = (trials + 1) // full_eval_steps + 1
        extra = 1 if trials < full_eval_steps else 0
        return total + (periodic + extra) * valset_size

    @with_callbacks
    def compile(  # type: ignore[override]
        self,
        student: Module,
        *,
        trainset: list[Example],
        teacher: Module | None = None,
        valset: list[Example] | None = None,
    ) -> Module:
        """Evolve ``student``'s instructions; ``valset`` (default: the trainset) holds
        the Pareto scores."""
        from gepa import optimize

        if trainset is None or len(trainset) == 0:
            raise AssertionError("Trainset must be provided and non-empty")
        if teacher is not None:
            raise AssertionError("Teacher is not supported in DspyGEPA yet.")
        predictors = list(student.named_predictors())
        self.max_metric_calls = self._budget(len(predictors), trainset, valset)
        if valset is None:
            logger.warning(
                "No valset provided; Using trainset as valset. This is useful as an "
                "inference-time scaling strategy where you want GEPA to find the best "
                "solutions for the provided tasks in the trainset, as it makes GEPA overfit "
                "prompts to the provided trainset. In order to ensure generalization and "
                "perform well on unseen tasks, please provide separate trainset and valset. "
                "Provide the smallest valset that is just large enough to match the "
                "downstream task distribution, while keeping trainset as large as possible."
            )
        valset = valset or trainset
        logger.info("Using %d examples for tracking Pareto scores.", len(valset))
        adapter = DspyqAdapter(
            student,
            self.metric_fn,
            {name: self._feedback_fn(name, p) for name, p in predictors},
            failure_score=self.failure_score,
            num_threads=self.num_threads,
            add_format_failure_as_feedback=self.add_format_failure_as_feedback,
            rng=random.Random(self.seed),
            reflection_lm=self.reflection_lm,
            instruction_proposer=self.custom_instruction_proposer,
            warn_on_score_mismatch=self.warn_on_score_mismatch,
        )
        reflect = None
        if self.reflection_lm is not None:

            def reflect(prompt: str) -> str:
                return adapter.stripped_lm_call(prompt)[0]

        engine: Any = optimize  # typed for gepa's own adapters; ours follows its protocol
        result: Any = engine(
            seed_candidate={name: p.signature.instructions for name, p in predictors},
            trainset=trainset,
            valset=valset,
            adapter=adapter,
            reflection_lm=reflect,
            candidate_selection_strategy=self.candidate_selection_strategy,
            skip_perfect_score=self.skip_perfect_score,
            reflection_minibatch_size=self.reflection_minibatch_size,
            module_selector=self.component_selector,
            perfect_score=self.perfect_score,
            use_merge=self.use_merge,
            max_merge_invocations=self.max_merge_invocations,
            max_metric_calls=self.max_metric_calls,
            logger=_LoggerAdapter(logger),
            run_dir=self.log_dir,
            use_wandb=self.use_wandb,
            wandb_api_key=self.wandb_api_key,
            wandb_init_kwargs=self.wandb_init_kwargs,
            use_mlflow=self.use_mlflow,
            track_best_outputs=self.track_best_outputs,
            display_progress_bar=True,
            raise_on_exception=True,
            seed=self.seed,
            **self.gepa_kwargs,
        )
        program = adapter.build_program(result.best_candidate)
        if self.track_stats:
            program.detailed_results = DspyGEPAResult.from_gepa_result(result, adapter)  # type: ignore[attr-defined]
        return program

    def _budget(self, components: int, trainset: list[Example], valset: Any) -> int:
        if self.auto is not None:
            return self.auto_budget(
                num_preds=max(components, 1),
                num_candidates=AUTO_RUN_SETTINGS[self.auto]["n"],
                valset_size=len(valset) if valset is not None else len(trainset),
            )
        if self.max_full_evals is not None:
            return self.max_full_evals * (len(trainset) + (len(valset) if valset else 0))
        if self.max_metric_calls is None:
            raise AssertionError("Either auto, max_full_evals, or max_metric_calls must be set.")
        return self.max_metric_calls

    def _feedback_fn(self, pred_name: str, predictor: Any) -> Any:
        """Ask the metric about one predictor's call; a bare score gets DSPy's feedback text."""

        def feedback(
            predictor_output: Any,
            predictor_inputs: Any,
            module_inputs: Example,
            module_outputs: Any,
            captured_trace: Any,
        ) -> Any:
            own_calls = [(predictor, predictor_inputs, predictor_output)]
            output = self.metric_fn(
                module_inputs, module_outputs, captured_trace, pred_name, own_calls
            )
            if hasattr(output, "feedback"):
                if output["feedback"] is None:
                    output["feedback"] = f"This trajectory got a score of {output['score']}."
                return output
            return {"score": output, "feedback": f"This trajectory got a score of {output}."}

        return feedback

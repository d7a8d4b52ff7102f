"""BetterTogether: prompt and weight optimizers run in a sequence, the best program kept.

As DSPy 3.4.1's: ``BetterTogether(metric, **optimizers)`` names its optimizers
(``p=BootstrapFewShotWithRandomSearch(metric)`` and ``w=BootstrapFinetune(metric)``
when none are given) and ``compile(..., strategy="p -> w -> p")`` runs them in that
order on one student, every program scored on the valset (given, or the first
``valset_ratio`` of the trainset). The returned program carries
``candidate_programs`` (best first, earlier programs winning ties) and
``flag_compilation_error_occurred`` (a failed step stops the sequence; the best program
so far is returned). Without a valset the latest program is returned.
"""

from __future__ import annotations

import inspect
import logging
import random
from typing import Any

from dspyq.core.context import current
from dspyq.core.example import Example, Prediction
from dspyq.core.module import Module
from dspyq.errors import ConfigurationError
from dspyq.optimize.bootstrap_finetune import BootstrapFinetune
from dspyq.optimize.evaluate import DEFAULT_MAX_ERRORS, Evaluate, Metric
from dspyq.optimize.finetune_programs import (
    all_predictors_have_lms,
    assert_all_predictors_have_lms,
    kill_lms,
    launch_lms,
    prepare_student,
    prepare_teacher,
)
from dspyq.optimize.random_search import BootstrapFewShotWithRandomSearch
from dspyq.optimize.teleprompter import Teleprompter

__all__ = ["BetterTogether", "compile_parameters"]

logger = logging.getLogger(__name__)

YELLOW, GREEN, BLUE, BOLD, ENDC = "\033[93m", "\033[92m", "\033[94m", "\033[1m", "\033[0m"


def compile_parameters(optimizer: Teleprompter) -> list[str]:
    """The names ``optimizer.compile`` takes; a dspyq optimizer whose ``compile`` forwards
    ``**kwargs`` to its ``_compile`` takes that method's keyword options too."""
    parameters = inspect.signature(optimizer.compile).parameters
    names = [n for n, p in parameters.items() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    inner = getattr(optimizer, "_compile", None)
    if len(names) < len(parameters) and inner is not None:
        extra = inspect.signature(inner).parameters.values()
        names += [p.name for p in extra if p.kind is inspect.Parameter.KEYWORD_ONLY]
    return names


class BetterTogether(Teleprompter):
    """``BetterTogether(metric, p=..., w=...).compile(student, trainset=..., strategy=...)``."""

    STRAT_SEP = " -> "

    def __init__(self, metric: Metric, **optimizers: Teleprompter) -> None:
        self.metric = metric
        if not optimizers:
            logger.info(
                "No optimizers provided. Using defaults: "
                "BootstrapFewShotWithRandomSearch (p) and BootstrapFinetune (w). "
                "You can use the letters p and w to specify the compile strategy. "
                "For example, to run weight optimization after prompt optimization, use "
                "strategy='p -> w'."
            )
            optimizers = {
                "p": BootstrapFewShotWithRandomSearch(metric=metric),
                "w": BootstrapFinetune(metric=metric),
            }
        for key, optimizer in optimizers.items():
            if not isinstance(optimizer, Teleprompter):
                raise TypeError(
                    f"Optimizer '{key}' must be a Teleprompter, got {type(optimizer).__name__}"
                )
        self.optimizers: dict[str, Teleprompter] = optimizers

    def compile(  # type: ignore[override]
        self,
        student: Module,
        *,
        trainset: list[Example],
        teacher: Module | list[Module] | None = None,
        valset: list[Example] | None = None,
        num_threads: int | None = None,
        max_errors: int | None = None,
        provide_traceback: bool | None = None,
        seed: int | None = None,
        valset_ratio: float = 0.1,
        shuffle_trainset_between_steps: bool = True,
        strategy: str = "p -> w -> p",
        optimizer_compile_args: dict[str, dict[str, Any]] | None = None,
    ) -> Module:
        logger.info(f"\n{BOLD}==> BETTERTOGETHER COMPILATION STARTED <=={ENDC}")
        logger.info(f"{BLUE}Strategy:{ENDC} {strategy}")
        logger.info(f"{BLUE}Trainset size:{ENDC} {len(trainset)}")
        ratio = valset_ratio if valset is None else "using provided valset"
        logger.info(f"{BLUE}Validation ratio:{ENDC} {ratio}")

        student, teachers = self._prepare_student_and_teacher(student, teacher)
        trainset, valset = self._prepare_trainset_and_valset(trainset, valset, valset_ratio)
        if max_errors is None:
            max_errors = current().get("max_errors")
            max_errors = DEFAULT_MAX_ERRORS if max_errors is None else max_errors
        steps = self._prepare_strategy(strategy)
        compile_args = self._prepare_optimizer_compile_args(optimizer_compile_args, teachers)
        self._evaluation = (valset, num_threads, max_errors, provide_traceback)
        student = self._run_strategies(
            student, trainset, teachers, seed, steps, shuffle_trainset_between_steps, compile_args
        )
        best = student.candidate_programs[0]  # type: ignore[attr-defined]
        logger.info(f"\n{BOLD}{GREEN}==> BETTERTOGETHER COMPILATION COMPLETE <=={ENDC}")
        logger.info(f"{GREEN}Best score achieved:{ENDC} {best['score']}")
        logger.info(
            f"{GREEN}Best strategy:{ENDC} {best['strategy'] or 'original (no optimization)'}"
        )
        student._compiled = True
        return student

    # --- preparation (DSPy's checks and messages) --------------------------------------------

    def _prepare_student_and_teacher(
        self, student: Module, teacher: Module | list[Module] | None
    ) -> tuple[Module, list[Module] | None]:
        student = prepare_student(student)
        assert_all_predictors_have_lms(student, role="student")
        if not teacher:
            return student, None
        teachers = teacher if isinstance(teacher, list) else [teacher]
        return student, [prepare_teacher(student, t) for t in teachers]

    def _prepare_trainset_and_valset(
        self, trainset: list[Example], valset: list[Example] | None, valset_ratio: float
    ) -> tuple[list[Example], list[Example] | None]:
        if not trainset:
            raise ConfigurationError("trainset cannot be empty")
        if valset_ratio < 0 or valset_ratio >= 1:
            raise ConfigurationError(f"valset_ratio must be in range [0, 1), got {valset_ratio}")
        trainset = trainset[:]
        if valset:
            logger.info(
                f"{BLUE}Using provided validation set ({len(valset)} examples). "
                f"Ignoring valset_ratio.{ENDC}"
            )
            return trainset, valset
        if valset_ratio == 0:
            logger.info(
                f"{YELLOW}No validation set provided and valset_ratio=0. "
                f"No validation set created.{ENDC}"
            )
            return trainset, None
        logger.info(f"{BLUE}Sampling {valset_ratio:.1%} of trainset as validation set.{ENDC}")
        count = int(valset_ratio * len(trainset))
        valset, trainset = trainset[:count], trainset[count:]
        logger.info(
            f"{BLUE}Created validation set: {len(valset)} examples. "
            f"Training set: {len(trainset)} examples.{ENDC}"
        )
        return trainset, valset

    def _prepare_strategy(self, strategy: str) -> list[str]:
        if not strategy or not strategy.strip():
            raise ConfigurationError("strategy cannot be empty")
        steps = strategy.split(self.STRAT_SEP)
        invalid = [step for step in steps if step not in self.optimizers]
        if invalid:
            raise ConfigurationError(
                f"Strategy contains invalid optimizer keys: {invalid}. "
                f"Valid keys are: {list(self.optimizers.keys())}"
            )
        return steps

    def _prepare_optimizer_compile_args(
        self, optimizer_compile_args: dict[str, dict[str, Any]] | None, teacher: Any
    ) -> dict[str, dict[str, Any]]:
        logger.info(f"{BLUE}Validating optimizer compile arguments...{ENDC}")
        if not optimizer_compile_args:
            return {}
        for key, args in optimizer_compile_args.items():
            if key not in self.optimizers:
                raise ConfigurationError(
                    f"Invalid optimizer key '{key}'. Valid keys are: {list(self.optimizers.keys())}"
                )
            optimizer = self.optimizers[key]
            if "student" in args:
                raise ConfigurationError(
                    f"'student' is not allowed in optimizer_compile_args for optimizer '{key}'. "
                    "The same student is used throughout compilation."
                )
            valid = compile_parameters(optimizer)
            invalid = set(args) - set(valid)
            if invalid:
                raise ConfigurationError(
                    f"Invalid compile arguments for optimizer '{key}': {sorted(invalid)}. "
                    f"{type(optimizer).__name__}.compile() accepts: {valid}"
                )
        return optimizer_compile_args

    # --- the sequence -----------------------------------------------------------------

    def _run_strategies(
        self,
        student: Module,
        trainset: list[Example],
        teacher: list[Module] | None,
        seed: int | None,
        steps: list[str],
        shuffle: bool,
        compile_args: dict[str, dict[str, Any]],
    ) -> Module:
        rng = random.Random(seed)
        candidates: list[dict[str, Any]] = []
        error_occurred = False
        logger.info(f"\n{BOLD}==> BASELINE EVALUATION <=={ENDC}")
        logger.info("Evaluating original program (no optimization applied)")
        launch_lms(student)
        score = self._evaluate_on_valset(student, rng)
        self._add_candidate(candidates, student, "", score)
        logger.info(f"{YELLOW}Baseline score:{ENDC} {score}")

        for ind, step in enumerate(steps):
            current_strategy = self.STRAT_SEP.join(steps[: ind + 1])
            optimizer = self.optimizers[step]
            name = type(optimizer).__name__
            logger.info(f"\n{BOLD}==> STEP {ind + 1}/{len(steps)}: {name.upper()} <=={ENDC}")
            logger.info(f"{BLUE}Current strategy:{ENDC} '{current_strategy}'")
            logger.info(f"{BLUE}Optimizer:{ENDC} {name}")
            try:
                if shuffle:
                    logger.info(f"{BLUE}Shuffling trainset...{ENDC}")
                    rng.shuffle(trainset)
                student, score, is_new_best = self._run_and_evaluate_step(
                    optimizer, student, teacher, trainset, compile_args.get(step, {}),
                    candidates, current_strategy, rng,
                )  # fmt: skip
                if is_new_best:
                    logger.info(
                        f"{GREEN}New best score!{ENDC} {score} (strategy: '{current_strategy}')"
                    )
                else:
                    logger.info(f"{YELLOW}Score after optimization:{ENDC} {score}")
            except Exception as e:
                error_occurred = True
                logger.error(
                    f"{YELLOW}Step {ind + 1}/{len(steps)} failed with error: "
                    f"{type(e).__name__}: {e}{ENDC}"
                )
                logger.error(
                    f"{YELLOW}Stopping optimization early. Returning best program found so far "
                    f"from {len(candidates)} candidate(s).{ENDC}"
                )
                logger.error(f"{YELLOW}Traceback:{ENDC}", exc_info=True)
                break

        kill_lms(student)
        indexed = list(enumerate(candidates))
        indexed.sort(
            key=lambda x: (x[1]["score"] if x[1]["score"] is not None else float("-inf"), -x[0]),
            reverse=True,
        )
        ranked = [candidate for _, candidate in indexed]
        valset = self._evaluation[0]
        best = indexed[-1][1] if not valset else ranked[0]
        best_student = best["program"]
        best_student.candidate_programs = ranked
        best_student.flag_compilation_error_occurred = error_occurred
        logger.info(f"\n{BOLD}==> OPTIMIZATION SUMMARY <=={ENDC}")
        logger.info(f"{GREEN}Best score:{ENDC} {best['score']}")
        shown = best["strategy"] if best["strategy"] else "original (no optimization)"
        logger.info(f"{GREEN}Best strategy:{ENDC} {shown}")
        logger.info(f"{BLUE}Total candidates evaluated:{ENDC} {len(ranked)}")
        return best_student

    def _run_and_evaluate_step(
        self,
        optimizer: Teleprompter,
        student: Module,
        teacher: list[Module] | None,
        trainset: list[Example],
        compile_args: dict[str, Any],
        candidates: list[dict[str, Any]],
        current_strategy: str,
        rng: random.Random,
    ) -> tuple[Module, float | None, bool]:
        lms_before = [predictor.lm for predictor in student.predictors()]
        student._compiled = False
        name = type(optimizer).__name__
        logger.info(f"{BLUE}Running {name} with {len(trainset)} training examples...{ENDC}")
        valset = self._evaluation[0]
        offered = {"trainset": trainset, "teacher": teacher, "valset": valset, **compile_args}
        accepted = set(compile_parameters(optimizer))
        student = optimizer.compile(student, **{k: v for k, v in offered.items() if k in accepted})
        if not all_predictors_have_lms(student):
            logger.warning(
                f"{YELLOW}Warning: {name} incorrectly reset predictor LMs. "
                f"Restoring to original LMs.{ENDC}"
            )
            for predictor, lm in zip(student.predictors(), lms_before, strict=False):
                predictor.lm = lm
        models_after = [p.lm.model if p.lm else None for p in student.predictors()]
        if [lm.model if lm else None for lm in lms_before] != models_after:
            launch_lms(student)
        score = self._evaluate_on_valset(student, rng)
        self._add_candidate(candidates, student, current_strategy, score)
        scores = [c["score"] for c in candidates if c["score"] is not None]
        best_so_far = max(scores) if scores else float("-inf")
        return student, score, score is not None and score >= best_so_far

    @staticmethod
    def _add_candidate(
        candidates: list[dict[str, Any]], student: Module, strategy: str, score: float | None
    ) -> None:
        candidates.append({"score": score, "program": student.deepcopy(), "strategy": strategy})

    def _evaluate_on_valset(self, program: Module, rng: random.Random) -> float | None:
        valset, num_threads, max_errors, provide_traceback = self._evaluation
        if not valset:
            logger.info(f"{YELLOW}No validation set provided. Skipping evaluation.{ENDC}")
            return None
        logger.info(f"{BLUE}Evaluating on {len(valset)} validation examples...{ENDC}")
        evaluate = Evaluate(
            devset=valset,
            metric=self.metric,
            num_threads=num_threads,
            max_errors=max_errors,
            display_table=False,
            display_progress=True,
            provide_traceback=provide_traceback,
        )
        try:  # the whole valset: DSPy's eval_candidate_program with batch_size=len(valset)
            result: Prediction = evaluate(program, devset=valset)
        except Exception:
            logger.error("An exception occurred during evaluation", exc_info=True)
            return 0.0
        return float(result.score)

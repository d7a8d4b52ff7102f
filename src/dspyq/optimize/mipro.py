"""MIPROv2: search instructions and few-shot demo sets jointly with Bayesian optimization.

Same steps, parameters and defaults as DSPy 3.4.1's ``dspy.MIPROv2``:

1. bootstrap ``num_candidates`` demo sets per predictor (zero-shot, labelled only,
   ``BootstrapFewShot`` in order, then shuffled ones with a random demo count);
2. propose instruction candidates per predictor with a :class:`GroundedProposer`
   (candidate 0 is always the original instruction);
3. search (instruction index, demo set index) per predictor with optuna's seeded
   ``TPESampler``: each trial scores a combination on a minibatch of the valset, and
   every ``minibatch_full_eval_steps`` trials the combination with the best average
   minibatch score is scored on the whole valset; the best full score wins
   (:mod:`dspyq.optimize.mipro_search`).

Steps 1 and 2 are methods (:meth:`MIPROv2.create_demo_candidates`,
:meth:`MIPROv2.propose_instructions`) whose results are JSON once the demos are dumped;
a trial of step 3 is JSON params in, a score out, so a coordinator can run the trials
as tasks.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from dspyq.core.context import context, current
from dspyq.core.example import Example
from dspyq.core.module import Module
from dspyq.errors import ConfigurationError
from dspyq.optimize.evaluate import DEFAULT_MAX_ERRORS, Evaluate
from dspyq.optimize.grounded_proposer import GroundedProposer
from dspyq.optimize.local_executor import run_rounds
from dspyq.optimize.mipro_demos import (
    BOOTSTRAPPED_FEWSHOT_EXAMPLES_IN_CONTEXT,
    create_demo_candidates,
)
from dspyq.optimize.mipro_search import (
    DemoCandidates,
    MiproRounds,
    MiproState,
    candidate_programs,
    create_minibatch,
    demo_json,
    json_state,
    score_params,
    split_valset,
)
from dspyq.optimize.strategy import Bench
from dspyq.optimize.teleprompter import CompileInputs, Teleprompter

__all__ = ["AUTO_RUN_SETTINGS", "MIPROv2"]

logger = logging.getLogger(__name__)

MIN_MINIBATCH_SIZE = 50

AUTO_RUN_SETTINGS = {
    "light": {"n": 6, "val_size": 100},
    "medium": {"n": 12, "val_size": 300},
    "heavy": {"n": 18, "val_size": 1000},
}

AutoMode = Literal["light", "medium", "heavy"]


class MIPROv2(Teleprompter):
    """Jointly optimize instructions and demos (see the module docstring).

    ``auto`` ("light", "medium", "heavy") sets the number of candidates, trials and the
    valset size; with ``auto=None`` give ``num_candidates`` here and ``num_trials`` to
    :meth:`compile`. ``prompt_model`` writes instructions and ``task_model`` runs the
    program (both default to the configured LM).
    """

    def __init__(
        self,
        metric: Callable[..., Any],
        prompt_model: Any = None,
        task_model: Any = None,
        teacher_settings: Mapping[str, Any] | None = None,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 4,
        auto: AutoMode | None = "light",
        num_candidates: int | None = None,
        num_threads: int | None = None,
        max_errors: int | None = None,
        seed: int = 9,
        init_temperature: float = 0.5,
        verbose: bool = False,
        track_stats: bool = True,
        log_dir: str | None = None,
        metric_threshold: float | None = None,
    ) -> None:
        if auto not in (None, "light", "medium", "heavy"):
            raise ConfigurationError(
                f"Invalid value for auto: {auto}. Must be one of None, 'light', 'medium', 'heavy'."
            )
        self.auto = auto
        self.num_fewshot_candidates = num_candidates
        self.num_instruct_candidates = num_candidates
        self.num_candidates = num_candidates
        self.metric = metric
        self.init_temperature = init_temperature
        self.task_model = task_model or current().lm
        self.prompt_model = prompt_model or current().lm
        self.max_bootstrapped_demos = max_bootstrapped_demos
        self.max_labeled_demos = max_labeled_demos
        self.verbose = verbose
        self.track_stats = track_stats
        self.log_dir = log_dir
        self.teacher_settings = dict(teacher_settings or {})
        self.prompt_model_total_calls = 0
        self.total_calls = 0
        self.num_threads = num_threads
        self.max_errors = max_errors
        self.metric_threshold = metric_threshold
        self.seed = seed
        self.rng = random.Random(seed)
        if not self.prompt_model or not self.task_model:
            raise ConfigurationError(
                "Either provide both prompt_model and task_model or set a default LM "
                "through dspyq.configure(lm=...)"
            )

    def _compile(
        self,
        inputs: CompileInputs,
        *,
        num_trials: int | None = None,
        max_bootstrapped_demos: int | None = None,
        max_labeled_demos: int | None = None,
        seed: int | None = None,
        minibatch: bool = True,
        minibatch_size: int = 35,
        minibatch_full_eval_steps: int = 5,
        program_aware_proposer: bool = True,
        data_aware_proposer: bool = True,
        view_data_batch_size: int = 10,
        tip_aware_proposer: bool = True,
        fewshot_aware_proposer: bool = True,
        requires_permission_to_run: bool | None = None,
        provide_traceback: bool | None = None,
    ) -> Module:
        """The best program found (a copy: ``student`` is left as it was)."""
        if requires_permission_to_run is False:
            logger.warning(
                "'requires_permission_to_run' is deprecated and will be removed in a future version."
            )
        elif requires_permission_to_run:
            raise ConfigurationError(
                "User confirmation is removed from MIPROv2. "
                "Please remove the 'requires_permission_to_run' argument."
            )
        zeroshot = self.max_bootstrapped_demos == 0 and self.max_labeled_demos == 0
        seed = seed or self.seed
        if max_bootstrapped_demos is not None:
            self.max_bootstrapped_demos = max_bootstrapped_demos
        if max_labeled_demos is not None:
            self.max_labeled_demos = max_labeled_demos
        options = {
            "zeroshot": zeroshot,
            "num_trials": num_trials,
            "minibatch": minibatch,
            "minibatch_size": minibatch_size,
            "minibatch_full_eval_steps": minibatch_full_eval_steps,
            "program_aware_proposer": program_aware_proposer,
            "data_aware_proposer": data_aware_proposer,
            "view_data_batch_size": view_data_batch_size,
            "tip_aware_proposer": tip_aware_proposer,
            "fewshot_aware_proposer": fewshot_aware_proposer,
        }
        evaluate = Evaluate(
            devset=[],
            metric=self.metric,
            num_threads=self.num_threads,
            max_errors=self._max_errors(),
            display_table=False,
            display_progress=True,
            provide_traceback=provide_traceback,
        )
        program = inputs.student.deepcopy()
        valset = inputs.valset
        rounds = MiproRounds(self, seed, options, log_dir=self.log_dir)
        with context(lm=self.task_model):
            run = run_rounds(
                rounds,
                Bench(
                    program,
                    list(inputs.trainset),
                    None if valset is None else list(valset),
                    inputs.teacher,
                ),
                score=lambda candidate, devset: score_params(evaluate, candidate, devset),
            )
        return self._best_program(run.state, program)

    def prepare_search(self, bench: Bench, seed: int, options: Mapping[str, Any]) -> MiproState:
        """Steps 1 and 2 (demo sets, instruction proposals) and the search's settings: the
        search space as the strategy's state. Calls the task model and the prompt model."""
        zeroshot = bool(
            options.get(
                "zeroshot", self.max_bootstrapped_demos == 0 and self.max_labeled_demos == 0
            )
        )
        num_trials = options.get("num_trials")
        self._check_run_mode(bench.student, num_trials, zeroshot)
        self.rng = random.Random(seed)
        train, val = self._split(bench.trainset, bench.valset)
        positions = {id(example): i for i, example in enumerate(val)}
        trials, chosen, minibatch = self._run_mode_settings(
            bench.student, num_trials, bool(options.get("minibatch", True)), zeroshot, val
        )
        size = int(options.get("minibatch_size", 35))
        if minibatch and size > len(chosen):
            raise ConfigurationError(
                f"Minibatch size cannot exceed the size of the valset. Valset size: {len(chosen)}."
            )
        with context(lm=self.task_model):
            logger.info("==> STEP 1: BOOTSTRAP FEWSHOT EXAMPLES <==")
            demo_sets = self.create_demo_candidates(bench.student, train, seed, bench.teacher)
        logger.info("==> STEP 2: PROPOSE INSTRUCTION CANDIDATES <==")
        instructions = self.propose_instructions(
            bench.student,
            train,
            demo_sets,
            view_data_batch_size=int(options.get("view_data_batch_size", 10)),
            program_aware=bool(options.get("program_aware_proposer", True)),
            data_aware=bool(options.get("data_aware_proposer", True)),
            tip_aware=bool(options.get("tip_aware_proposer", True)),
            fewshot_aware=bool(options.get("fewshot_aware_proposer", True)),
        )
        logger.info("==> STEP 3: FINDING OPTIMAL PROMPT PARAMETERS <==")
        return MiproState(
            prepared=True,
            instructions={i: [str(t) for t in texts] for i, texts in instructions.items()},
            demos=None if zeroshot else demo_json(demo_sets),
            val_indices=[positions[id(example)] for example in chosen],
            num_trials=int(trials),
            minibatch=minibatch,
            minibatch_size=size,
            full_eval_steps=max(1, int(options.get("minibatch_full_eval_steps", 5))),
            rng=json_state(self.rng.getstate()),
        )

    def _best_program(self, state: MiproState, program: Module) -> Module:
        """The best combination as a program, carrying DSPy's run statistics."""
        best: Any = state.program(program, state.best_params)
        self.total_calls = state.total_eval_calls
        if self.track_stats:
            best.trial_logs = state.trial_logs
            best.score = state.best_score
            best.best_params = dict(state.best_params)
            best.prompt_model_total_calls = self.prompt_model_total_calls
            best.total_calls = state.total_eval_calls
            best.mb_candidate_programs = candidate_programs(state, program, full_eval=False)
            best.candidate_programs = candidate_programs(state, program, full_eval=True)
        logger.info("Returning best identified program with score %s!", state.best_score)
        return best

    # --- run-mode bookkeeping -----------------------------------------------------------

    def _check_run_mode(self, student: Module, num_trials: int | None, zeroshot: bool) -> None:
        if self.auto is None and self.num_candidates is not None and num_trials is None:
            suggested = self._trials_for(student, zeroshot, self.num_candidates)
            raise ConfigurationError(
                "If auto is None, num_trials must also be provided. Given num_candidates="
                f"{self.num_candidates}, we'd recommend setting num_trials to ~{suggested}."
            )
        if self.auto is None and (self.num_candidates is None or num_trials is None):
            raise ConfigurationError("If auto is None, num_candidates must also be provided.")
        if self.auto is not None and (self.num_candidates is not None or num_trials is not None):
            raise ConfigurationError(
                "If auto is not None, num_candidates and num_trials cannot be set, since they "
                "would be overridden by the auto settings. Please either set auto to None, or "
                "do not specify num_candidates and num_trials."
            )

    @staticmethod
    def _trials_for(program: Module, zeroshot: bool, num_candidates: int) -> int:
        """DSPy's budget: max(2 * variables * log2(N), 1.5 * N) trials."""
        variables = len(program.predictors()) * (1 if zeroshot else 2)
        return int(max(2 * variables * math.log2(num_candidates), 1.5 * num_candidates))

    def _run_mode_settings(
        self,
        program: Module,
        num_trials: int | None,
        minibatch: bool,
        zeroshot: bool,
        valset: list[Example],
    ) -> tuple[int, list[Example], bool]:
        if self.auto is None:
            assert num_trials is not None  # checked by _check_run_mode
            return num_trials, valset, minibatch
        settings = AUTO_RUN_SETTINGS[self.auto]
        valset = create_minibatch(valset, settings["val_size"], self.rng)
        # Instructions get half the candidates when demos are searched too.
        self.num_instruct_candidates = settings["n"] if zeroshot else int(settings["n"] * 0.5)
        self.num_fewshot_candidates = settings["n"]
        num_trials = self._trials_for(program, zeroshot, settings["n"])
        logger.info(
            "RUNNING WITH THE FOLLOWING %s AUTO RUN SETTINGS: num_trials: %d, minibatch: %s, "
            "num_fewshot_candidates: %d, num_instruct_candidates: %d, valset size: %d",
            self.auto.upper(),
            num_trials,
            len(valset) > MIN_MINIBATCH_SIZE,
            self.num_fewshot_candidates,
            self.num_instruct_candidates,
            len(valset),
        )
        return num_trials, valset, len(valset) > MIN_MINIBATCH_SIZE

    _split = staticmethod(split_valset)

    def _max_errors(self) -> int:
        if self.max_errors is not None:
            return self.max_errors
        configured = current().get("max_errors")
        return DEFAULT_MAX_ERRORS if configured is None else int(configured)

    # --- step 1: demo sets ----------------------------------------------------------------

    def create_demo_candidates(
        self,
        program: Module,
        trainset: Sequence[Example],
        seed: int,
        teacher: Module | None = None,
    ) -> DemoCandidates:
        """``num_fewshot_candidates`` demo sets per predictor index (see
        :func:`dspyq.optimize.mipro_demos.create_demo_candidates`)."""
        return create_demo_candidates(self, program, trainset, teacher)

    # --- step 2: instructions ---------------------------------------------------------------

    def propose_instructions(
        self,
        program: Module,
        trainset: Sequence[Example],
        demo_candidates: DemoCandidates | None,
        *,
        view_data_batch_size: int = 10,
        program_aware: bool = True,
        data_aware: bool = True,
        tip_aware: bool = True,
        fewshot_aware: bool = True,
    ) -> dict[int, list[str]]:
        """``num_instruct_candidates`` instructions per predictor index, the original first."""
        proposer = GroundedProposer(
            prompt_model=self.prompt_model,
            program=program,
            trainset=trainset,
            view_data_batch_size=view_data_batch_size,
            use_dataset_summary=data_aware,
            program_aware=program_aware,
            use_task_demos=fewshot_aware,
            num_demos_in_context=BOOTSTRAPPED_FEWSHOT_EXAMPLES_IN_CONTEXT,
            use_tip=tip_aware,
            set_tip_randomly=tip_aware,
            rng=self.rng,
            init_temperature=self.init_temperature,
        )
        proposed = proposer.propose_instructions_for_program(
            trainset=trainset,
            program=program,
            demo_candidates=demo_candidates,
            N=self.num_instruct_candidates or 1,
        )
        self.prompt_model_total_calls += proposer.calls
        for i, predictor in enumerate(program.predictors()):
            if proposed.get(i):
                proposed[i][0] = predictor.signature.instructions
            else:
                proposed[i] = [predictor.signature.instructions]
            for j, instruction in enumerate(proposed[i]):
                logger.info("Proposed instruction %d for predictor %d: %s", j, i, instruction)
        return proposed

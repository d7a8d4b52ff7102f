"""``BootstrapFewShotWithOptuna``: bootstrap a demo pool, then let optuna pick one demo
per predictor, scored on the valset.

As DSPy 3.4.1's: ``BootstrapFewShot`` (``max_bootstrapped_demos=max_demos``) compiles
the pool; each of ``num_candidate_programs`` trials suggests, per predictor, an index
into its pool (``demo_index_for_<name>``), gives a reset student that one demo (as a
plain dict, as DSPy does) and scores it; the program of the best trial is returned.
DSPy's study is unseeded; ``seed`` (dspyq's addition) seeds optuna's default TPE
sampler so a run can be repeated. A queued run executes this whole ``compile`` as one task.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dspyq.core.module import Module
from dspyq.errors import InputError
from dspyq.optimize.bootstrap import BootstrapFewShot
from dspyq.optimize.evaluate import Evaluate, Metric
from dspyq.optimize.teleprompter import CompileInputs, Teleprompter

__all__ = ["BootstrapFewShotWithOptuna"]


class BootstrapFewShotWithOptuna(Teleprompter):
    """One bootstrapped demo per predictor, chosen by an optuna study (module docstring)."""

    def __init__(
        self,
        metric: Metric,
        teacher_settings: Mapping[str, Any] | None = None,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 16,
        max_rounds: int = 1,
        num_candidate_programs: int = 16,
        num_threads: int | None = None,
        seed: int | None = None,
    ) -> None:
        self.metric = metric
        self.teacher_settings: dict[str, Any] = dict(teacher_settings or {})
        self.max_rounds = max_rounds
        self.num_threads = num_threads
        self.min_num_samples = 1
        self.max_num_samples = max_bootstrapped_demos
        self.num_candidate_sets = num_candidate_programs
        self.max_labeled_demos = max_labeled_demos
        self.seed = seed

    def objective(self, trial: Any) -> float:
        """Score a reset student holding the trial's demo for each predictor."""
        program = self.student.reset_copy()
        pools = self.compiled_teleprompter.named_predictors()
        for (name, compiled), (_, predictor) in zip(
            pools, program.named_predictors(), strict=False
        ):
            if not compiled.demos:
                raise InputError(
                    f"BootstrapFewShotWithOptuna: predictor {name!r} has no demos to choose from"
                )
            index = trial.suggest_int(f"demo_index_for_{name}", 0, len(compiled.demos) - 1)
            predictor.demos = [dict(compiled.demos[index])]
        evaluate = Evaluate(devset=self.valset, metric=self.metric, num_threads=self.num_threads)
        score = float(evaluate(program).score)
        trial.set_user_attr("program", program)
        return score

    def _compile(self, inputs: CompileInputs, *, max_demos: int) -> Module:
        """The best trial's program; ``max_demos`` bounds the bootstrapped pool."""
        import optuna

        self.trainset = list(inputs.trainset)
        self.valset = list(inputs.valset or inputs.trainset)
        self.student = inputs.student.reset_copy()
        teacher = inputs.teacher
        self.teacher = teacher.deepcopy() if teacher is not None else inputs.student.reset_copy()
        bootstrap = BootstrapFewShot(
            metric=self.metric,
            max_bootstrapped_demos=max_demos,
            max_labeled_demos=self.max_labeled_demos,
            teacher_settings=self.teacher_settings,
            max_rounds=self.max_rounds,
        )
        self.compiled_teleprompter = bootstrap.compile(
            self.student, teacher=self.teacher, trainset=self.trainset
        )
        sampler = optuna.samplers.TPESampler(seed=self.seed)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.optimize(self.objective, n_trials=self.num_candidate_sets)
        best: Module = study.trials[study.best_trial.number].user_attrs["program"]
        return best

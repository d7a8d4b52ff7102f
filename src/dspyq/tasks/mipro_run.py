"""MIPROv2 as an optimization run: its settings as JSON, and its search as a strategy.

A run carries the optimizer's constructor settings and ``compile`` options; a worker
rebuilds the optimizer from them and runs the same round strategy ``compile`` runs
(:class:`dspyq.optimize.mipro_search.MiproRounds`): the preparation (demo sets and
instruction proposals) as one task, then one trial per round.

Nothing here imports Celery.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dspyq.core.module import Module
from dspyq.errors import ConfigurationError, InputError
from dspyq.lm.lm import LM
from dspyq.optimize.mipro import MIPROv2
from dspyq.optimize.mipro_search import MiproRounds

MIPRO = "MIPROv2"

COMPILE_OPTIONS: dict[str, Any] = {
    "num_trials": None,
    "minibatch": True,
    "minibatch_size": 35,
    "minibatch_full_eval_steps": 5,
    "program_aware_proposer": True,
    "data_aware_proposer": True,
    "view_data_batch_size": 10,
    "tip_aware_proposer": True,
    "fewshot_aware_proposer": True,
}
"""``MIPROv2.compile`` options a run accepts (``compile_options=``), with DSPy's defaults."""


def mipro_config(optimizer: MIPROv2, compile_options: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor settings and compile options that rebuild ``optimizer``'s search."""
    unknown = sorted(set(compile_options) - set(COMPILE_OPTIONS))
    if unknown:
        raise ConfigurationError(
            f"MIPROv2 runs do not take compile option(s) {', '.join(unknown)}; "
            f"known: {', '.join(COMPILE_OPTIONS)}",
            context={"unknown": unknown},
        )
    return {
        "auto": optimizer.auto,
        "num_candidates": optimizer.num_candidates,
        "max_bootstrapped_demos": optimizer.max_bootstrapped_demos,
        "max_labeled_demos": optimizer.max_labeled_demos,
        "max_errors": optimizer.max_errors,
        "seed": optimizer.seed,
        "init_temperature": optimizer.init_temperature,
        "metric_threshold": optimizer.metric_threshold,
        **COMPILE_OPTIONS,
        **dict(compile_options),
    }


def check_mipro_run(settings: Mapping[str, Any], student: Module) -> None:
    """Refuse at submit time (InputError) what ``MIPROv2.compile`` would refuse (auto vs.
    num_trials)."""
    optimizer = _optimizer(settings, metric=_no_metric, prompt_lm=None, task_lm=None)
    zeroshot = optimizer.max_bootstrapped_demos == 0 and optimizer.max_labeled_demos == 0
    try:
        optimizer._check_run_mode(student, settings.get("num_trials"), zeroshot)
    except ConfigurationError as exc:
        raise InputError(exc.message, context=dict(exc.context)) from None


def _no_metric(*_: Any) -> bool:
    return False


def _optimizer(
    settings: Mapping[str, Any],
    metric: Callable[..., Any],
    prompt_lm: LM | None,
    task_lm: LM | None,
    teacher_lm: LM | None = None,
) -> MIPROv2:
    placeholder = object()  # the constructor wants models; submit-time checks have none
    return MIPROv2(
        metric=metric,
        prompt_model=prompt_lm or placeholder,
        task_model=task_lm or placeholder,
        teacher_settings={} if teacher_lm is None else {"lm": teacher_lm},
        **{name: settings[name] for name in _CONSTRUCTOR_SETTINGS},
    )


_CONSTRUCTOR_SETTINGS = (
    "max_bootstrapped_demos",
    "max_labeled_demos",
    "auto",
    "num_candidates",
    "max_errors",
    "seed",
    "init_temperature",
    "metric_threshold",
)
"""The run settings handed to ``MIPROv2``'s constructor as they are."""


def mipro_rounds(
    settings: Mapping[str, Any],
    metric: Callable[..., Any],
    prompt_lm: LM | None,
    task_lm: LM | None,
    teacher_lm: LM | None = None,
) -> MiproRounds:
    """A run's MIPROv2 search as its round strategy, with the run's compile options."""
    optimizer = _optimizer(settings, metric, prompt_lm, task_lm, teacher_lm)
    options = {name: settings.get(name, default) for name, default in COMPILE_OPTIONS.items()}
    return MiproRounds(optimizer, int(settings["seed"]), options)

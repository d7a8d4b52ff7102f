"""Optimizers by name: where a worker finds the class an optimization run names.

A run names its optimizer by class name when it is registered here, else by import path
(``package.module:Class``, within the ``allowed_imports`` setting). Classes are imported
when first asked for, so registering one costs nothing until a run uses it.

Each registration may map constructor parameters to the attribute that keeps them
(``max_bootstrapped_demos`` -> ``max_num_samples``), for optimizers that do not keep a
parameter under its own name; may say why the optimizer cannot run on the queue; and
may say how a worker prepares its whole ``compile``: the weight optimizers fine-tune
each predictor's own LM, so the student's predictors without one get the run's LM (as
``student.set_lm(lm)`` gives them in-process), and BetterTogether's returned program
keeps its candidates in an attribute a stored program cannot hold.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dspyq.core.imports import import_path_of, resolve_import
from dspyq.errors import InputError

__all__ = ["Registration", "optimizer_class", "optimizer_name", "register", "registration"]


@dataclass(frozen=True)
class Registration:
    """A registered optimizer: its class's import path and how to read its settings."""

    path: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    """Constructor parameter -> the (dotted) attribute path that keeps its value."""
    refusal: str | None = None
    """Why runs refuse it (None: it runs)."""
    sets_predictor_lms: bool = False
    """Its ``compile`` needs an LM on every predictor: a worker gives the run's LM to the
    student's predictors that have none."""
    unstored: tuple[str, ...] = ()
    """Attributes of its compiled program left out of the stored program."""


REGISTERED: dict[str, Registration] = {}


def register(
    name: str,
    path: str,
    refusal: str | None = None,
    *,
    sets_predictor_lms: bool = False,
    unstored: tuple[str, ...] = (),
    **attributes: str,
) -> Registration:
    """Register the optimizer class at ``path`` as ``name`` (its class name)."""
    REGISTERED[name] = Registration(path, dict(attributes), refusal, sets_predictor_lms, unstored)
    return REGISTERED[name]


_BOOTSTRAP_POOL: dict[str, Any] = {  # attribute names, splatted into register
    "max_bootstrapped_demos": "max_num_samples",
    "num_candidate_programs": "num_candidate_sets",
}

register("LabeledFewShot", "dspyq.optimize.labeled:LabeledFewShot")
register("BootstrapFewShot", "dspyq.optimize.bootstrap:BootstrapFewShot")
register(
    "BootstrapFewShotWithRandomSearch",
    "dspyq.optimize.random_search:BootstrapFewShotWithRandomSearch",
    **_BOOTSTRAP_POOL,
)
register("COPRO", "dspyq.optimize.copro:COPRO")
register("MIPROv2", "dspyq.optimize.mipro:MIPROv2")
register("InferRules", "dspyq.optimize.infer_rules:InferRules", num_threads="eval_threads")
register(
    "BootstrapFewShotWithOptuna",
    "dspyq.optimize.optuna_fewshot:BootstrapFewShotWithOptuna",
    **_BOOTSTRAP_POOL,
)
register(
    "KNNFewShot",
    "dspyq.optimize.knn_fewshot:KNNFewShot",
    k="KNN.k",
    trainset="KNN.trainset",
    vectorizer="KNN.embedding",
)
register("SIMBA", "dspyq.optimize.simba:SIMBA")
register("GEPA", "dspyq.optimize.gepa:GEPA")
# Fine-tuning jobs run from the worker, with its provider settings and keys.
register(
    "BootstrapFinetune",
    "dspyq.optimize.bootstrap_finetune:BootstrapFinetune",
    sets_predictor_lms=True,
)
register(
    "BetterTogether",
    "dspyq.optimize.better_together:BetterTogether",
    sets_predictor_lms=True,
    unstored=("candidate_programs",),  # the run's result is the best of them
)


def registration(cls: type) -> Registration | None:
    """``cls``'s registration, if ``cls`` is the registered class of its name."""
    found = REGISTERED.get(cls.__name__)
    if found is None or found.path != _path_of(cls):
        return None
    return found


def _path_of(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def optimizer_name(cls: type) -> str:
    """How a run names ``cls``: its registered name, else its import path (InputError
    when it has none a worker could import)."""
    if registration(cls) is not None:
        return cls.__name__
    return import_path_of(cls, f"optimizer class {cls.__name__}")


def optimizer_class(name: str, allowed: Sequence[str] | None = None) -> type:
    """The optimizer class a run names (a registered name or an import path)."""
    found = REGISTERED.get(name)
    if found is not None:
        module, _, qualname = found.path.partition(":")
        cls = getattr(importlib.import_module(module), qualname)  # dspyq's own: trusted
    elif ":" in name:
        cls = resolve_import(name, allowed)
    else:
        raise InputError(
            f"no optimizer {name!r} is registered; known: {', '.join(sorted(REGISTERED))}",
            context={"optimizer": name},
        )
    if not isinstance(cls, type):
        raise InputError(f"optimizer {name!r} is not a class", context={"optimizer": name})
    return cls

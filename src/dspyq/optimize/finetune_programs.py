"""Checks and LM chores shared by the weight optimizers (BootstrapFinetune, BetterTogether).

The checks raise what DSPy 3.4.1's raise, with its messages: AssertionError for
programs that are not structurally equivalent or share predictors (raised explicitly,
so they hold under ``python -O`` too), ConfigurationError where DSPy raises ValueError.
"""

from __future__ import annotations

from typing import Any

from dspyq.core.module import Module
from dspyq.core.predict import Predict
from dspyq.errors import ConfigurationError

__all__ = [
    "all_predictors_have_lms",
    "assert_all_predictors_have_lms",
    "assert_no_shared_predictor",
    "assert_structural_equivalency",
    "kill_lms",
    "launch_lms",
    "prepare_student",
    "prepare_teacher",
]


def all_predictors_have_lms(program: Module) -> bool:
    return all(predictor.lm for predictor in program.predictors())


def assert_all_predictors_have_lms(program: Module, role: str = "program") -> None:
    """ConfigurationError naming the predictors of ``program`` that have no LM."""
    missing = [name for name, predictor in program.named_predictors() if not predictor.lm]
    if missing:
        raise ConfigurationError(
            f"The {role} program must have a language model set on every predictor, "
            f"but these have none: {missing}. "
            f"Assign an LM to them; `{role}.set_lm(lm)` sets every predictor and "
            f"overwrites LMs that are already set."
        )


def prepare_student(student: Module) -> Module:
    if getattr(student, "_compiled", False):
        raise ConfigurationError("The student program should not be compiled.")
    return student


def prepare_teacher(student: Module, teacher: Module | None = None) -> Module:
    """The teacher (the student itself when none is given), checked against the student."""
    if teacher is None:
        return student
    assert_structural_equivalency(student, teacher)
    assert_no_shared_predictor(student, teacher)
    return teacher


def _require(condition: bool, message: str = "") -> None:
    if not condition:
        raise AssertionError(message) if message else AssertionError


def assert_structural_equivalency(program1: object, program2: object) -> None:
    _require(isinstance(program1, Module))
    _require(isinstance(program2, Module))
    assert isinstance(program1, Module) and isinstance(program2, Module)  # for the type checker
    num1, num2 = len(program1.predictors()), len(program2.predictors())
    _require(
        num1 == num2,
        "Structurally equivalent programs must have the same number of predictors. The number "
        f"of predictors for the two modules do not match: {num1} != {num2}",
    )
    pairs = zip(program1.named_predictors(), program2.named_predictors(), strict=False)
    for ind, ((name1, pred1), (name2, pred2)) in enumerate(pairs):
        _require(
            name1 == name2,
            "Program predictor names must match at  corresponding indices for structural "
            f"equivalency. The predictor names for the programs do not match at index {ind}: "
            f"'{name1}' != '{name2}'",
        )
        _require(isinstance(pred1, Predict))
        _require(isinstance(pred2, Predict))


def assert_no_shared_predictor(program1: Module, program2: Module) -> None:
    names1 = {id(p): n for n, p in program1.named_predictors()}
    names2 = {id(p): n for n, p in program2.named_predictors()}
    shared = set(names1) & set(names2)
    listed = ", ".join(names1[key] for key in shared)
    _require(not shared, f"The programs share the following predictor(s) with each other: {listed}")


def _unique_lms(program: Module) -> list[Any]:
    return list({id(p.lm): p.lm for p in program.predictors()}.values())


def launch_lms(program: Module) -> None:
    for lm in _unique_lms(program):
        lm.launch()


def kill_lms(program: Module) -> None:
    for lm in _unique_lms(program):
        lm.kill()

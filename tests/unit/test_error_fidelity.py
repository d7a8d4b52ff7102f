"""Bad arguments and failing attempts: dspyq raises (or returns) what DSPy 3.4.1 does.

Each case runs in-process through both packages; the outcome compared is the builtin
exception classes (so ``except ValueError`` code catches the same) and the message.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import dspyq
from dspyq.errors import StateError

PACKAGES = ("dspy", "dspyq")


def _package(name: str) -> tuple[ModuleType, ModuleType]:
    return importlib.import_module(name), importlib.import_module(f"{name}.utils")


def _outcome(run: Callable[[], Any]) -> tuple[str, ...]:
    printed = io.StringIO()  # what DSPy prints (BestOfN's failed attempts) is compared too
    try:
        with contextlib.redirect_stdout(printed):
            result = run()
    except Exception as error:
        builtin = [c.__name__ for c in type(error).__mro__ if c.__module__ == "builtins"]
        return ("raised", *builtin, str(error), printed.getvalue())
    return ("returned", type(result).__name__, printed.getvalue())


def _completions(pkg: ModuleType) -> list[Any]:
    return [pkg.Prediction(rationale="x", answer="1"), pkg.Prediction(rationale="y", answer="2")]


CASES: dict[str, Callable[[ModuleType, ModuleType, Path], Any]] = {
    "mcc_wrong_number_of_attempts": lambda pkg, utils, tmp: pkg.MultiChainComparison(
        "question -> answer", M=3
    )(completions=_completions(pkg), question="q"),
    "pot_two_outputs": lambda pkg, utils, tmp: pkg.ProgramOfThought("question -> answer, other"),
    "codeact_callable_object": lambda pkg, utils, tmp: pkg.CodeAct(
        "question -> answer", tools=[type("Tool", (), {"__call__": lambda self, x: x})()]
    ),
    "codeact_uncallable_tool": lambda pkg, utils, tmp: pkg.CodeAct(
        "question -> answer", tools=[42]
    ),
    "tool_uncallable": lambda pkg, utils, tmp: pkg.Tool(42),
    "ensemble_deterministic": lambda pkg, utils, tmp: importlib.import_module(
        f"{pkg.__name__}.teleprompt"
    ).Ensemble(deterministic=True),
    "signature_without_arrow": lambda pkg, utils, tmp: pkg.Signature("question"),
    "signature_two_arrows": lambda pkg, utils, tmp: pkg.Predict("a -> b -> c"),
    "signature_shared_names": lambda pkg, utils, tmp: pkg.Predict("b, a, c -> c, b"),
    "parallel_bad_pair": lambda pkg, utils, tmp: pkg.Parallel(num_threads=1)(
        [(pkg.Predict("q -> a"), 5)]
    ),
    "save_other_suffix": lambda pkg, utils, tmp: pkg.Predict("q -> a").save(tmp / "p.txt"),
    "save_no_suffix": lambda pkg, utils, tmp: pkg.Predict("q -> a").save(tmp / "p"),
    "save_program_with_suffix": lambda pkg, utils, tmp: pkg.Predict("q -> a").save(
        tmp / "p.json", save_program=True
    ),
    "load_other_suffix": lambda pkg, utils, tmp: pkg.Predict("q -> a").load(tmp / "p.txt"),
    "load_missing_file": lambda pkg, utils, tmp: pkg.Predict("q -> a").load(tmp / "absent.json"),
    "best_of_n_zero_attempts": lambda pkg, utils, tmp: pkg.BestOfN(
        pkg.Predict("q -> a"), N=0, reward_fn=lambda args, pred: 1.0, threshold=1.0
    )(q="x"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_arguments_raise_what_dspy_raises(case: str, tmp_path: Path) -> None:
    outcomes = []
    for name in PACKAGES:
        pkg, utils = _package(name)
        with pkg.context(lm=utils.DummyLM([{"answer": "a", "rationale": "r"}] * 3)):
            outcomes.append(_outcome(lambda p=pkg, u=utils: CASES[case](p, u, tmp_path)))
    theirs, ours = outcomes
    assert ours[:-1] == theirs[:-1]  # not what is printed: DSPy's progress bars


def test_state_path_errors_stay_state_errors(tmp_path: Path) -> None:
    program = dspyq.Predict("q -> a")
    for call in (lambda: program.save(tmp_path / "p.txt"), lambda: program.load(tmp_path / "x.j")):
        with pytest.raises(StateError):
            call()
    with pytest.raises(FileNotFoundError):
        program.load(tmp_path / "absent.json")


# (N, fail_count, attempts whose reward raises): DSPy re-raises when the attempt index
# exceeds what is left of fail_count, which each failure lowers, across calls too.
SCRIPTS = [
    (2, None, {0, 1}),
    (3, None, {0, 1, 2}),
    (3, 1, {0}),
    (4, 1, {0, 1, 2, 3}),
    (3, 0, {0, 1}),
    (5, 2, {0, 2, 3}),
]


def _rollouts(name: str, cls: str, n: int, fail_count: int | None, fails: set[int]) -> list[Any]:
    pkg, utils = _package(name)
    calls: list[int] = []

    def reward(args: Any, pred: Any) -> float:
        calls.append(1)
        if (len(calls) - 1) % n in fails:
            raise RuntimeError("bad reward")
        return 0.0

    answers = [{"answer": "a", "discussion": "d", "advice": "{}"}] * 40
    module = getattr(pkg, cls)(
        pkg.Predict("question -> answer"),
        N=n,
        reward_fn=reward,
        threshold=1.0,
        fail_count=fail_count,
    )
    results: list[Any] = []
    for _ in range(2):
        with pkg.context(lm=utils.DummyLM(answers)):
            results.append(_outcome(lambda: module(question="q")))
    return [*results, module.fail_count]


@pytest.mark.parametrize("cls", ["BestOfN", "Refine"])
@pytest.mark.parametrize(("n", "fail_count", "fails"), SCRIPTS)
def test_failing_attempts_raise_or_return_as_in_dspy(
    cls: str, n: int, fail_count: int | None, fails: set[int]
) -> None:
    logging.disable(logging.WARNING)
    try:
        theirs, ours = (_rollouts(name, cls, n, fail_count, fails) for name in PACKAGES)
    finally:
        logging.disable(logging.NOTSET)
    assert ours == theirs

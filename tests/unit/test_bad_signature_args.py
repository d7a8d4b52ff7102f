"""Bad signature arguments fail as in DSPy 3.4.1: same exception class, same message,
at the same moment (building the module or first calling it)."""

from __future__ import annotations

import warnings
from typing import Any

import dspy
import pytest

import dspyq

pytestmark = pytest.mark.usefixtures("fresh_configurations")


def _outcome(action: Any) -> tuple[str, ...]:
    """What a user sees: the result's type, or the exception's class (and its builtin
    base, so dspyq's SignatureError subclasses compare with DSPy's builtins) and text."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ("ok", type(action()).__name__)
    except Exception as exc:
        builtin = next(c for c in type(exc).__mro__ if c.__module__ == "builtins")
        return (builtin.__name__, str(exc))


BUILD = [
    ("Predict", (42,)),
    ("Predict", (None,)),
    ("Predict", ("",)),
    ("Predict", ("a ->",)),
    ("Predict", ("-> b",)),
    ("Predict", ("a -> b -> c",)),
    ("Predict", (["a"],)),
    ("Predict", ("a -> b", 3)),
    ("ChainOfThought", (42,)),
    ("ChainOfThought", (None,)),
    ("ReAct", (42, [])),
]


@pytest.mark.parametrize(("name", "args"), BUILD, ids=[f"{n}{a!r}" for n, a in BUILD])
def test_building_fails_or_succeeds_alike(name: str, args: tuple[Any, ...]) -> None:
    theirs = _outcome(lambda: getattr(dspy, name)(*args))
    ours = _outcome(lambda: getattr(dspyq, name)(*args))
    assert ours == theirs


CALL = [(42,), (None,), (["a"],), ("a -> b", 3)]


@pytest.mark.parametrize("args", CALL, ids=[repr(a) for a in CALL])
def test_calling_a_module_built_from_a_bad_argument_fails_alike(args: tuple[Any, ...]) -> None:
    def run(pkg: Any) -> tuple[str, ...]:
        module = pkg.Predict(*args)
        with pkg.context(lm=pkg.utils.DummyLM([{"b": "x"}])):
            return _outcome(lambda: module(a="1"))

    theirs, ours = run(dspy), run(dspyq)
    assert ours == theirs
    assert ours[0] in ("AttributeError", "TypeError")

"""DSPy's side of the comparison tests: an LM that answers from a script and records what it was sent."""

from __future__ import annotations

import warnings
from typing import Any

import dspy
from dspy.primitives.code_interpreter import CodeExecutionError


class ScriptedLM(dspy.BaseLM):
    """Answers each call with the next scripted text; ``calls`` holds the messages sent."""

    def __init__(self, answers: list[str]) -> None:
        super().__init__(model="scripted")
        self.answers, self.calls = list(answers), []

    def __call__(self, prompt: Any = None, messages: Any = None, **kwargs: Any) -> list[str]:
        self.calls.append(messages)
        return [self.answers.pop(0)]


class DenoShapedInterpreter(dspy.LocalInterpreter):
    """DSPy's LocalInterpreter reporting errors as DSPy's (Deno) PythonInterpreter does:
    ``"<Type>: <args list>"``, the shape dspyq's PythonInterpreter keeps."""

    def execute(self, code: str, variables: Any = None) -> Any:
        try:
            return super().execute(code, variables)
        except CodeExecutionError as exc:
            kind, message = str(exc).split(": ", 1)
            raise CodeExecutionError(f"{kind}: {[message]}") from exc


def warning_texts(warned: list[warnings.WarningMessage]) -> list[str]:
    """The messages of recorded warnings, less ResourceWarnings: those come from objects
    other tests left to the garbage collector, which may run inside either side's call."""
    return [str(w.message) for w in warned if not issubclass(w.category, ResourceWarning)]

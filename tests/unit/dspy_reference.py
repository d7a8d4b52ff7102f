"""DSPy's side of the comparison tests: an LM that answers from a script and records what it was sent."""

from __future__ import annotations

from typing import Any

import dspy


class ScriptedLM(dspy.BaseLM):
    """Answers each call with the next scripted text; ``calls`` holds the messages sent."""

    def __init__(self, answers: list[str]) -> None:
        super().__init__(model="scripted")
        self.answers, self.calls = list(answers), []

    def __call__(self, prompt: Any = None, messages: Any = None, **kwargs: Any) -> list[str]:
        self.calls.append(messages)
        return [self.answers.pop(0)]

"""Programs, tools and reward functions that a worker imports by path in the spec tests.

They live in a module of their own (imported as ``program_fixtures``, since tests/unit is
on the path) because a worker can import a module, never a test's local definitions.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from dspyq.core.chain_of_thought import ChainOfThought
from dspyq.core.example import Prediction
from dspyq.core.module import Module
from dspyq.core.predict import Predict
from dspyq.core.signature import InputField, OutputField, Signature

CORPUS = {
    "jaws": "Jaws (1975) was directed by Steven Spielberg.",
    "et": "E.T. (1982) was directed by Steven Spielberg.",
}


class Citation(BaseModel):
    source: str
    year: int


class AnswerWithContext(Signature):
    """Answer the question from the context only."""

    context: list[str] = InputField(desc="passages that may hold the answer")
    question: str = InputField()
    answer: str = OutputField(desc="a short factual answer")
    citation: Citation = OutputField()


def search(query: str, k: int = 2) -> list[str]:
    """Search the tiny film corpus for passages mentioning the query's words."""
    words = query.lower().split()
    return [text for key, text in CORPUS.items() if any(key in w for w in words)][:k]


def lookup_year(title: str) -> int:
    """The release year of a film."""
    return {"jaws": 1975, "e.t.": 1982}.get(title.lower(), 0)


def short_answer_reward(inputs: dict[str, Any], prediction: Prediction) -> float:
    """1.0 for answers of at most five words."""
    return 1.0 if len(str(prediction.answer).split()) <= 5 else 0.0


class RAG(Module):
    """Rewrite the question into a query, retrieve passages, answer with reasoning."""

    def __init__(
        self,
        signature: str | type[Signature] = AnswerWithContext,
        k: int = 2,
        retriever: Any = search,
        options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.k = k
        self.retriever = retriever
        self.options = dict(options or {})
        self.rewrite = Predict("question -> query", **self.options)
        self.respond = ChainOfThought(signature)

    def forward(self, question: str) -> Prediction:
        query = self.rewrite(question=question).query
        passages = self.retriever(query, k=self.k)
        prediction: Prediction = self.respond(context=passages, question=question)
        return prediction


class Ensemble(Module):
    """Holds sub-programs passed in as arguments (a list of modules)."""

    def __init__(self, programs: list[Module], *, label: str) -> None:
        super().__init__()
        self.programs = programs
        self.label = label

    def forward(self, **inputs: Any) -> Prediction:
        prediction: Prediction = self.programs[0](**inputs)
        return prediction


class Concat(Module):
    """Takes positional-only and ``*args`` arguments, which stay positional in a spec."""

    def __init__(self, first: str, /, *rest: str) -> None:
        super().__init__()
        self.parts = [first, *rest]
        self.predict = Predict(f"{', '.join(self.parts)} -> joined")

    def forward(self, **inputs: Any) -> Prediction:
        prediction: Prediction = self.predict(**inputs)
        return prediction


class NotAModule:
    """An importable class that is not a Module."""


def make_local_program() -> Module:
    """A program whose class is defined inside a function: a worker cannot import it."""

    class Local(Module):
        def forward(self) -> None:
            return None

    return Local()

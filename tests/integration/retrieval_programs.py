"""Programs that retrieve (Embeddings, KNN, ColBERTv2) or act in code (CodeAct), imported by
worker processes by path (their PYTHONPATH includes this directory), as a user's own
modules would be. Each builds its retriever from JSON arguments: a retriever object
itself cannot cross the queue."""

from __future__ import annotations

from typing import Any

import dspyq


def factorial(n: int) -> int:
    """The factorial of n."""
    return 1 if n <= 1 else n * factorial(n - 1)


class CorpusQA(dspyq.Module):
    """Answers from the corpus passage nearest the question (an Embeddings index)."""

    def __init__(self, corpus: list[str], embedder: str, api_base: str, k: int = 1) -> None:
        super().__init__()
        self.search = dspyq.Embeddings(corpus, dspyq.Embedder(embedder, api_base=api_base), k=k)
        self.respond = dspyq.Predict("context, question -> answer")

    def forward(self, question: str) -> Any:
        passages = self.search(question).passages
        return self.respond(context=passages, question=question)


class NearestQA(dspyq.Module):
    """Answers with the worked examples nearest the question as hints (KNN)."""

    def __init__(self, pairs: list[list[str]], embedder: str, api_base: str, k: int = 1) -> None:
        super().__init__()
        trainset = [dspyq.Example(question=q, answer=a).with_inputs("question") for q, a in pairs]
        vectorizer = dspyq.Embedder(embedder, api_base=api_base)
        self.knn = dspyq.KNN(k, trainset, vectorizer=vectorizer)
        self.respond = dspyq.Predict("hints, question -> answer")

    def forward(self, question: str) -> Any:
        hints = [f"{e.question} -> {e.answer}" for e in self.knn(question=question)]
        return self.respond(hints=hints, question=question)


class SearchQA(dspyq.Module):
    """Retrieve from a ColBERTv2 server, then answer from the passages."""

    def __init__(self, url: str, k: int = 2) -> None:
        super().__init__()
        self.rm = dspyq.ColBERTv2(url)
        self.retrieve = dspyq.Retrieve(k=k)
        self.respond = dspyq.Predict("context, question -> answer")

    def forward(self, question: str) -> Any:
        with dspyq.context(rm=self.rm):
            passages = self.retrieve(question).passages
        return self.respond(context=passages, question=question)


class IndexQA(dspyq.Module):
    """Takes a built index: a program that cannot be sent to a worker."""

    def __init__(self, index: Any) -> None:
        super().__init__()
        self.index = index
        self.respond = dspyq.Predict("context, question -> answer")

    def forward(self, question: str) -> Any:
        return self.respond(context=self.index(question).passages, question=question)

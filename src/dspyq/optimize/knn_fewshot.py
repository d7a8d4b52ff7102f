"""KNNFewShot: at each call, bootstrap demos from the training examples nearest to the inputs.

As DSPy 3.4.1's: the compiled program finds the ``k`` nearest training examples
(:class:`~dspyq.core.knn.KNN`) at each call, runs BootstrapFewShot on them with the given
options and calls the program it compiles. DSPy replaces ``forward`` on a copy of the
student; dspyq returns a :class:`~dspyq.optimize.knn_program.KNNFewShotProgram` holding
the same pieces as state, so the program can be stored and run on workers.
"""

from __future__ import annotations

from typing import Any

from dspyq.core.example import Example
from dspyq.core.knn import KNN
from dspyq.core.module import Module
from dspyq.optimize.knn_program import KNNFewShotProgram
from dspyq.optimize.teleprompter import Teleprompter


class KNNFewShot(Teleprompter):
    """``KNNFewShot(k, trainset, vectorizer, **bootstrap_options).compile(student)``."""

    def __init__(
        self, k: int, trainset: list[Example], vectorizer: Any, **few_shot_bootstrap_args: Any
    ) -> None:
        self.KNN = KNN(k, trainset, vectorizer=vectorizer)
        self.few_shot_bootstrap_args = few_shot_bootstrap_args

    def compile(self, student: Module, *, teacher: Module | None = None) -> Module:  # type: ignore[override]
        knn = self.KNN
        program = KNNFewShotProgram(
            student,
            knn.k,
            knn.trainset,
            knn.embedding,
            teacher=teacher,
            **self.few_shot_bootstrap_args,
        )
        program.knn = knn  # its trainset is embedded already
        return program

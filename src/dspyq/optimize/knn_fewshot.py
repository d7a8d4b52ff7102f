"""KNNFewShot: at each call, bootstrap demos from the training examples nearest to the inputs.

As DSPy 3.4.1's: ``compile(student)`` returns a reset copy whose ``forward`` finds the
``k`` nearest training examples (:class:`~dspyq.core.knn.KNN`), runs BootstrapFewShot on
them with the given options and calls the program it compiles. The compiled copy
replaces ``forward`` on the instance, so it runs in-process only: no program can be stored
for it, and queued runs refuse it (see :mod:`dspyq.optimize.registry`).
"""

from __future__ import annotations

import types
from typing import Any

from dspyq.core.example import Example
from dspyq.core.knn import KNN
from dspyq.core.module import Module
from dspyq.optimize.bootstrap import BootstrapFewShot
from dspyq.optimize.teleprompter import Teleprompter


class KNNFewShot(Teleprompter):
    """``KNNFewShot(k, trainset, vectorizer, **bootstrap_options).compile(student)``."""

    def __init__(
        self, k: int, trainset: list[Example], vectorizer: Any, **few_shot_bootstrap_args: Any
    ) -> None:
        self.KNN = KNN(k, trainset, vectorizer=vectorizer)
        self.few_shot_bootstrap_args = few_shot_bootstrap_args

    def compile(self, student: Module, *, teacher: Module | None = None) -> Module:  # type: ignore[override]
        student_copy = student.reset_copy()
        knn, options = self.KNN, self.few_shot_bootstrap_args

        def forward_pass(_self: Module, **kwargs: Any) -> Any:
            nearest = knn(**kwargs)
            compiled = BootstrapFewShot(**options).compile(
                student, teacher=teacher, trainset=nearest
            )
            return compiled(**kwargs)

        student_copy.forward = types.MethodType(forward_pass, student_copy)  # type: ignore[method-assign]
        return student_copy

"""KNNFewShotProgram: the program KNNFewShot compiles, kept as state so it can be stored.

At each call it finds the ``k`` training examples nearest to the inputs
(:class:`~dspyq.core.knn.KNN`), runs BootstrapFewShot on them with the given options and
calls the program that compiles, as DSPy 3.4.1's compiled KNNFewShot does. Its
constructor arguments (student, ``k``, trainset, vectorizer, options) are what a
:class:`~dspyq.core.program.ProgramSpec` records, so a worker rebuilds the same program;
the vectorizer must then be an Embedder or a module-level function.
"""

from __future__ import annotations

from typing import Any

from dspyq.core.example import Example
from dspyq.core.knn import KNN
from dspyq.core.module import Module, Parameter
from dspyq.optimize.bootstrap import BootstrapFewShot


class KNNFewShotProgram(Module):
    """``KNNFewShotProgram(student, k, trainset, vectorizer, teacher=None, **options)``."""

    def __init__(
        self,
        student: Module,
        k: int,
        trainset: list[Example],
        vectorizer: Any,
        teacher: Module | None = None,
        **few_shot_bootstrap_args: Any,
    ) -> None:
        super().__init__()
        self.student = student
        self.teacher = teacher
        self.k = k
        self.trainset = trainset
        self.vectorizer = vectorizer
        self.few_shot_bootstrap_args = few_shot_bootstrap_args
        # Embedded on first call: compile hands over the optimizer's, already embedded.
        self.knn: KNN | None = None

    def named_parameters(self) -> list[tuple[str, Parameter]]:
        """The student's, by the student's own paths: DSPy's compiled KNNFewShot is a copy
        of the student, so its saved state has the student's keys (no teacher's)."""
        return self.student.named_parameters()

    def dump_state(self, json_mode: bool = True) -> dict[str, Any]:
        return self.student.dump_state(json_mode=json_mode)

    def load_state(self, state: dict[str, Any], allow_unsafe_lm_state: bool = False) -> Module:
        self.student.load_state(state, allow_unsafe_lm_state=allow_unsafe_lm_state)
        return self

    def forward(self, **kwargs: Any) -> Any:
        if self.knn is None:
            self.knn = KNN(self.k, self.trainset, vectorizer=self.vectorizer)
        nearest = self.knn(**kwargs)
        compiled = BootstrapFewShot(**self.few_shot_bootstrap_args).compile(
            self.student, teacher=self.teacher, trainset=nearest
        )
        return compiled(**kwargs)

"""Ensemble: one program that runs several and reduces their predictions (DSPy 3.4.1's).

``Ensemble(reduce_fn=fn, size=k).compile(programs)`` returns an :class:`EnsembledProgram`
that calls ``k`` randomly sampled programs (all of them without ``size``) and returns
``reduce_fn(outputs)``, or the list of outputs without ``reduce_fn``. Unlike DSPy's
class made inside ``compile``, EnsembledProgram is a module-level class, so an ensemble
travels through the queue like any program (its programs and an importable
``reduce_fn`` go as JSON).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from dspyq.core.module import Module
from dspyq.optimize.teleprompter import Teleprompter


class EnsembledProgram(Module):
    """Runs its programs on the same inputs and reduces what they return."""

    def __init__(
        self,
        programs: Sequence[Module],
        size: int | None = None,
        reduce_fn: Callable[[list[Any]], Any] | None = None,
    ) -> None:
        super().__init__()
        self.programs = list(programs)
        self.size = size
        self.reduce_fn = reduce_fn

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        programs = random.sample(self.programs, self.size) if self.size else self.programs
        outputs = [program(*args, **kwargs) for program in programs]
        return self.reduce_fn(outputs) if self.reduce_fn else outputs


class Ensemble(Teleprompter):
    """``Ensemble(reduce_fn=..., size=None).compile(programs)`` -> EnsembledProgram."""

    def __init__(
        self,
        *,
        reduce_fn: Callable[[list[Any]], Any] | None = None,
        size: int | None = None,
        deterministic: bool = False,
    ) -> None:
        # DSPy asserts; the same error class even under -O.
        if deterministic is not False:
            raise AssertionError("TODO: Implement example hashing for deterministic ensemble.")
        self.reduce_fn = reduce_fn
        self.size = size
        self.deterministic = deterministic

    def compile(self, programs: Sequence[Module]) -> Module:  # type: ignore[override]
        return EnsembledProgram(programs, size=self.size, reduce_fn=self.reduce_fn)

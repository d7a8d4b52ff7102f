"""The optimizer base class: ``compile`` a student program into a better one.

DSPy calls its optimizers teleprompters; every one of them takes the same call,
``optimizer.compile(student, trainset=..., teacher=..., valset=...)``, and returns a
new program, leaving the student untouched.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dspyq.core.callbacks import with_callbacks
from dspyq.core.example import Example
from dspyq.core.module import Module

__all__ = ["CompileInputs", "Teleprompter"]


@dataclass(frozen=True)
class CompileInputs:
    """What every ``compile`` call is given: the student and the data to learn from."""

    student: Module
    trainset: Sequence[Example]
    teacher: Module | None = None
    valset: Sequence[Example] | None = None


class Teleprompter:
    """Base of every optimizer (``LabeledFewShot``, ``BootstrapFewShot``, ...).

    Subclasses keep their configuration as attributes, so :meth:`get_params` reports
    it (and what the last ``compile`` left behind, as DSPy does).
    """

    _compile: Callable[..., Module]
    """The optimizer's algorithm, called by :meth:`compile` with the
    :class:`CompileInputs` and the optimizer's own keyword-only options."""

    @with_callbacks
    def compile(
        self,
        student: Module,
        *,
        trainset: Sequence[Example],
        teacher: Module | None = None,
        valset: Sequence[Example] | None = None,
        **kwargs: Any,
    ) -> Module:
        """Optimize ``student`` on ``trainset`` and return the optimized copy.

        ``kwargs`` are the optimizer's own options: the keyword parameters of its
        ``_compile``, which holds its algorithm.
        """
        if getattr(self, "_compile", None) is None:
            raise NotImplementedError(f"{type(self).__name__} must define compile()")
        self._refuse_options(kwargs)
        return self._compile(CompileInputs(student, trainset, teacher, valset), **kwargs)

    def get_params(self) -> dict[str, Any]:
        """The optimizer's attributes: its settings and the state of its last run."""
        return dict(vars(self))

    def _refuse_options(self, options: Mapping[str, Any]) -> None:
        """Fail like a Python call would on keyword arguments this optimizer does not take.

        ``compile`` accepts ``**kwargs`` only to keep one call shape across optimizers;
        silently ignoring a misspelt option would hide a mistake.
        """
        parameters = inspect.signature(self._compile).parameters.values()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            return  # a _compile taking **options checks them itself
        accepted = {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
        unknown = [name for name in options if name not in accepted]
        if unknown:
            names = ", ".join(repr(name) for name in unknown)
            raise TypeError(
                f"{type(self).__name__}.compile() got unexpected keyword arguments: {names}"
            )

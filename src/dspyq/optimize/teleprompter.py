"""The optimizer base class: ``compile`` a student program into a better one.

DSPy calls its optimizers teleprompters; every one of them takes the same call,
``optimizer.compile(student, trainset=..., teacher=..., valset=...)``, and returns a
new program, leaving the student untouched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dspyq.core.example import Example
from dspyq.core.module import Module

__all__ = ["Teleprompter"]


class Teleprompter:
    """Base of every optimizer (``LabeledFewShot``, ``BootstrapFewShot``, ...).

    Subclasses keep their configuration as attributes, so :meth:`get_params` reports
    it (and what the last ``compile`` left behind, as DSPy does).
    """

    def compile(
        self,
        student: Module,
        *,
        trainset: Sequence[Example],
        teacher: Module | None = None,
        valset: Sequence[Example] | None = None,
        **kwargs: Any,
    ) -> Module:
        """Optimize ``student`` on ``trainset`` and return the optimized copy."""
        raise NotImplementedError(f"{type(self).__name__} must define compile()")

    def get_params(self) -> dict[str, Any]:
        """The optimizer's attributes: its settings and the state of its last run."""
        return dict(vars(self))

    def _refuse_options(self, options: Mapping[str, Any]) -> None:
        """Fail like a Python call would on keyword arguments this optimizer does not take.

        ``compile`` accepts ``**kwargs`` only to keep one call shape across optimizers;
        silently ignoring a misspelt option would hide a mistake.
        """
        if options:
            names = ", ".join(repr(name) for name in options)
            raise TypeError(
                f"{type(self).__name__}.compile() got unexpected keyword arguments: {names}"
            )

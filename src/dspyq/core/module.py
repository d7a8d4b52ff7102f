"""The Module base class: composable programs made of predictors, as in DSPy.

A Module's learnable parts are its :class:`Parameter` attributes (every ``Predict``).
They are found by walking the module's attributes, lists and dicts, and named the way
DSPy names them (``rewrite``, ``answer.predict``, ``hops[0]``, ``tools['search']``); those
names are the keys of the saved state, so programs move between DSPy and dspyq.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from dspyq.core.callbacks import with_callbacks
from dspyq.core.context import setting
from dspyq.errors import ConfigurationError, StateError

if TYPE_CHECKING:
    from dspyq.core.predict import Predict
    from dspyq.settings import PrivacyLevel

logger = logging.getLogger(__name__)


class Parameter:
    """Marker for the learnable parts of a program (optimizers tune these)."""

    def reset(self) -> None:
        """Forget what was learned (demos, traces, LM) and keep the definition."""

    def dump_state(self, json_mode: bool = True) -> dict[str, Any]:
        raise NotImplementedError

    def load_state(self, state: dict[str, Any], allow_unsafe_lm_state: bool = False) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class InitArgs:
    """The arguments a module was constructed with, so a worker can rebuild it.

    Deliberately neither a list nor a dict: parameter discovery must not walk into it
    (a sub-module passed as an argument is found through the attribute holding it).
    """

    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class Module:
    """Base class of every dspyq program: subclass it and write ``forward``.

    ``module(**inputs)`` runs :meth:`forward`; ``await module.acall(**inputs)`` runs
    :meth:`aforward`, which by default runs ``forward`` in a worker thread.
    """

    # Class-level defaults, so subclasses that skip ``super().__init__()`` still work.
    _compiled: bool = False
    callbacks: list[Any] = []
    _init_args: InitArgs | None = None

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        # Recorded in __new__, which sees the outermost constructor call exactly once,
        # so subclasses need not cooperate (see dspyq.core.program). Copies keep the
        # record: deepcopy calls __new__ without arguments, then restores __dict__.
        instance = super().__new__(cls)
        instance._init_args = InitArgs(tuple(args), dict(kwargs))
        return instance

    def __init__(self, callbacks: list[Any] | None = None) -> None:  # a non-list fails on use
        self.callbacks = list(callbacks or []) if isinstance(callbacks or [], list) else callbacks
        self._compiled = False

    @property
    def privacy(self) -> PrivacyLevel | None:
        """This program's privacy level (None: none of its own), sent with its spec; a
        job running it is at least this strict (see :mod:`dspyq.lm.privacy`)."""
        return self.__dict__.get("_privacy")

    @privacy.setter
    def privacy(self, level: PrivacyLevel | None) -> None:
        from dspyq.lm.privacy import requested_level  # InputError on an unknown level

        self.__dict__["_privacy"] = requested_level(level)

    # --- running ------------------------------------------------------------------

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    async def aforward(self, *args: Any, **kwargs: Any) -> Any:
        # asyncio.to_thread copies the current context, so configuration overrides follow.
        return await asyncio.to_thread(self.forward, *args, **kwargs)

    @with_callbacks
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not _tracking_usage():
            return self.forward(*args, **kwargs)
        from dspyq.lm.usage import track_usage

        with track_usage() as tracker:  # configure(track_usage=True): usage on the result
            output = self.forward(*args, **kwargs)
        _set_lm_usage(output, tracker.get_total_tokens())
        return output

    @with_callbacks
    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        if not _tracking_usage():
            return await self.aforward(*args, **kwargs)
        from dspyq.lm.usage import track_usage

        with track_usage() as tracker:
            output = await self.aforward(*args, **kwargs)
        _set_lm_usage(output, tracker.get_total_tokens())
        return output

    def batch(
        self,
        examples: list[Any],
        num_threads: int | None = None,
        max_errors: int | None = None,
        return_failed_examples: bool = False,
        provide_traceback: bool | None = None,
        disable_progress_bar: bool = False,
        timeout: int = 120,
        straggler_limit: int = 3,
    ) -> Any:
        """Run the program on each example's inputs in parallel, as DSPy's ``batch``.

        Returns the results in order, or ``(results, failed_examples, exceptions)``
        with ``return_failed_examples``; see :class:`dspyq.core.parallel.Parallel`.
        """
        from dspyq.core.parallel import Parallel

        executor = Parallel(
            num_threads=num_threads,
            max_errors=max_errors,
            return_failed_examples=return_failed_examples,
            provide_traceback=provide_traceback,
            disable_progress_bar=disable_progress_bar,
            timeout=timeout,
            straggler_limit=straggler_limit,
        )
        return executor.forward([(self, example.inputs()) for example in examples])

    # --- discovering parameters and sub-modules --------------------------------------

    def named_parameters(self) -> list[tuple[str, Parameter]]:
        """Every Parameter reachable from this module, with its DSPy-style path."""
        found: list[tuple[str, Parameter]] = []
        seen: set[int] = set()

        def visit(name: str, value: Any, top: bool = False) -> None:
            if isinstance(value, Parameter):
                if id(value) not in seen:
                    seen.add(id(value))
                    found.append((name, value))
            elif isinstance(value, Module):
                # A compiled sub-module is frozen: its predictors are not tuned again.
                if not getattr(value, "_compiled", False):
                    for sub_name, param in value.named_parameters():
                        visit(f"{name}.{sub_name}", param)
            # As DSPy: one level of list, tuple or dict only, so programs kept in
            # records (SIMBA's ``candidate_programs`` dicts) are not taken for parts.
            elif top and isinstance(value, list | tuple):
                for index, item in enumerate(value):
                    visit(f"{name}[{index}]", item)
            elif top and isinstance(value, dict):
                for key, item in value.items():
                    visit(f"{name}['{key}']", item)

        if isinstance(self, Parameter):
            visit("self", self)
        for name, value in self.__dict__.items():
            visit(name, value, top=True)
        return found

    def parameters(self) -> list[Parameter]:
        return [param for _, param in self.named_parameters()]

    def named_predictors(self) -> list[tuple[str, Predict]]:
        """The ``Predict`` parameters, by path (the keys of the saved state)."""
        from dspyq.core.predict import Predict

        return [(name, p) for name, p in self.named_parameters() if isinstance(p, Predict)]

    def predictors(self) -> list[Predict]:
        return [predictor for _, predictor in self.named_predictors()]

    def named_sub_modules(
        self, type_: type | None = None, skip_compiled: bool = False
    ) -> Iterator[tuple[str, Any]]:
        """Breadth-first walk of ``self`` and every module inside it (``self.answer`` ...)."""
        wanted = type_ or Module
        queue: deque[tuple[str, Any]] = deque([("self", self)])
        seen = {id(self)}

        def enqueue(name: str, item: Any) -> None:
            if id(item) not in seen:
                seen.add(id(item))
                queue.append((name, item))

        while queue:
            name, item = queue.popleft()
            if isinstance(item, wanted):
                yield name, item
            if isinstance(item, Module):
                if skip_compiled and getattr(item, "_compiled", False):
                    continue
                for sub_name, sub_item in item.__dict__.items():
                    enqueue(f"{name}.{sub_name}", sub_item)
            elif isinstance(item, list | tuple):
                for index, sub_item in enumerate(item):
                    enqueue(f"{name}[{index}]", sub_item)
            elif isinstance(item, dict):
                for key, sub_item in item.items():
                    enqueue(f"{name}[{key}]", sub_item)

    def map_named_predictors(self, func: Callable[[Predict], Predict]) -> Module:
        """Replace every predictor with ``func(predictor)``, in place; returns ``self``."""
        for name, predictor in self.named_predictors():
            _set_by_path(self, name, func(predictor))
        return self

    # --- copies -------------------------------------------------------------------

    def deepcopy(self) -> Module:
        """An independent copy of the program (LMs copy themselves cheaply, sharing
        their HTTP clients)."""
        try:
            return copy.deepcopy(self)
        except Exception as exc:  # an attribute refused deepcopy: copy what we can
            logger.debug("deepcopy of %s fell back to per-attribute copy: %s", self, exc)
        clone = type(self).__new__(type(self))
        for attr, value in self.__dict__.items():
            if isinstance(value, Module):
                setattr(clone, attr, value.deepcopy())
                continue
            try:
                setattr(clone, attr, copy.deepcopy(value))
            except Exception:
                try:
                    setattr(clone, attr, copy.copy(value))
                except Exception:
                    setattr(clone, attr, value)
        return clone

    def reset_copy(self) -> Module:
        """A deep copy with every parameter reset (no demos, no traces, no LM)."""
        clone = self.deepcopy()
        for param in clone.parameters():
            param.reset()
        return clone

    # --- LMs ----------------------------------------------------------------------

    def set_lm(self, lm: Any) -> None:
        """Use ``lm`` for every predictor of this program."""
        for _, predictor in self.named_predictors():
            predictor.lm = lm

    def get_lm(self) -> Any:
        """The one LM all predictors use (``None`` if none is set on them)."""
        lms = [predictor.lm for _, predictor in self.named_predictors()]
        if lms and all(lm is lms[0] for lm in lms):
            return lms[0]
        if not lms:
            raise ConfigurationError(f"{type(self).__name__} has no predictors, hence no LM")
        raise ConfigurationError(
            "Multiple LMs are being used in the module. There's no unique LM to return."
        )

    # --- state --------------------------------------------------------------------

    def dump_state(self, json_mode: bool = True) -> dict[str, Any]:
        """``{predictor path: predictor state}``, DSPy's saved form without metadata."""
        return {
            name: param.dump_state(json_mode=json_mode) for name, param in self.named_parameters()
        }

    def load_state(self, state: dict[str, Any], allow_unsafe_lm_state: bool = False) -> Module:
        """Apply a state from :meth:`dump_state` (or a DSPy save) to this program."""
        if not isinstance(state, dict):
            raise StateError(
                f"Saved state must be a JSON object of predictor states, "
                f"not {type(state).__name__}."
            )
        names = [name for name, _ in self.named_parameters()]
        missing = [name for name in names if name not in state]
        unexpected = [key for key in state if key not in names and key != "metadata"]
        if missing or unexpected:
            raise StateError(
                f"Saved state does not fit {type(self).__name__}: "
                f"missing predictors {missing}, unexpected predictors {unexpected}. "
                f"This program's predictors are {names}.",
                context={"missing": missing, "unexpected": unexpected, "expected": names},
            )
        from dspyq.core.predict import Predict
        from dspyq.core.state import validate_predictor_state

        # Only predictors have the predictor state shape; other parameters (Retrieve) check their own.
        for name, param in self.named_parameters():
            if isinstance(param, Predict):
                validate_predictor_state(name, state[name])
        for name, param in self.named_parameters():
            try:
                param.load_state(state[name], allow_unsafe_lm_state=allow_unsafe_lm_state)
            except StateError:
                raise
            except Exception as exc:
                raise StateError(
                    f"Saved state for predictor {name!r} cannot be applied: {exc}",
                    context={"predictor": name},
                ) from exc
        return self

    def save(self, path: str | Path, save_program: bool = False) -> None:
        """Save as DSPy does: state as JSON (``.json``) or pickle (``.pkl``), or with
        ``save_program=True`` the whole program pickled into directory ``path``."""
        from dspyq.core.saving import save_pickled
        from dspyq.core.state import write_state

        target = Path(path)
        if save_program or target.suffix == ".pkl":
            save_pickled(self, target, save_program)
        else:
            write_state(target, self.dump_state())

    def load(
        self, path: str | Path, allow_pickle: bool = False, allow_unsafe_lm_state: bool = False
    ) -> Module:
        """Read a state saved by :meth:`save` or by DSPy and apply it.

        The state is first applied to a copy, so a file that does not fit leaves this
        program untouched. ``api_base``-like LM settings in the file are ignored unless
        ``allow_unsafe_lm_state=True`` (a file must not redirect calls and keys elsewhere).
        A ``.pkl`` file is read only with ``allow_pickle=True`` (it can run code).
        """
        from dspyq.core.saving import load_pickled_state
        from dspyq.core.state import read_state

        target = Path(path)
        pickled = target.suffix == ".pkl"
        state = load_pickled_state(target, allow_pickle) if pickled else read_state(target)
        self.deepcopy().load_state(state, allow_unsafe_lm_state=allow_unsafe_lm_state)
        return self.load_state(state, allow_unsafe_lm_state=allow_unsafe_lm_state)

    def __repr__(self) -> str:
        lines = [f"{name} = {predictor!r}" for name, predictor in self.named_predictors()]
        return "\n".join(lines) if lines else f"{type(self).__name__}()"


def _tracking_usage() -> bool:
    """Whether this call should carry its usage: tracking is on and no block tracks it yet."""
    return bool(setting("track_usage")) and setting("usage_tracker") is None


def _set_lm_usage(output: Any, tokens: dict[str, Any]) -> None:
    from dspyq.core.example import Prediction

    target = output[0] if isinstance(output, tuple) and output else output
    if isinstance(target, Prediction):
        target.set_lm_usage(tokens)
    else:
        logger.warning(
            "Failed to set LM usage. Please return `dspyq.Prediction` object from "
            "dspyq.Module to enable usage tracking."
        )


_PATH_PART = re.compile(r"\.?([A-Za-z_]\w*)|\[(\d+)\]|\['([^']*)'\]")


def _set_by_path(root: Any, path: str, value: Any) -> None:
    """Assign ``value`` at a DSPy parameter path such as ``answer.predict`` or ``hops[0]``."""
    if path == "self":
        raise ValueError("cannot replace the module itself")
    steps: list[tuple[bool, Any]] = []  # (is_attribute, name or index/key)
    for match in _PATH_PART.finditer(path):
        attr, index, key = match.groups()
        if attr is not None:
            steps.append((True, attr))
        else:
            steps.append((False, int(index) if index is not None else key))
    target = root
    for is_attribute, part in steps[:-1]:
        target = getattr(target, part) if is_attribute else target[part]
    is_attribute, last = steps[-1]
    if is_attribute:
        setattr(target, last, value)
    else:
        target[last] = value

"""Runtime configuration: which LM and adapter modules use, and whether calls are traced.

The counterpart of DSPy's ``dspy.settings`` / ``dspy.configure`` / ``dspy.context``
(the name ``dspyq.settings`` is taken by the typed deployment settings).

- :func:`configure` sets process-wide defaults.
- :func:`context` overrides them inside a ``with`` block. Overrides live in a
  :class:`contextvars.ContextVar`, so concurrent threads and asyncio tasks each see their
  own; asyncio tasks inherit their creator's overrides automatically.
- Plain threads start with an empty context, so code that fans work out to a thread
  pool wraps the work with :func:`bind_context` to carry the caller's configuration.

A worker binds its own LM plumbing here for each job, the way it binds
``correlation_id``: ``lm_cache`` (the layered cache every LM call reads and writes) and
``lm_gate`` (the rate limiter and breaker every provider attempt passes). Unbound, as in
a plain Python process, an LM uses the in-process cache and no gate, as DSPy does.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

_DEFAULTS: dict[str, Any] = {
    "lm": None,
    "adapter": None,
    "trace": None,
    "max_trace_size": 10_000,
}

_global: dict[str, Any] = dict(_DEFAULTS)
_global_lock = threading.Lock()
_overrides: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "dspyq_config_overrides", default=MappingProxyType({})
)


class Config:
    """A read-only snapshot of the configuration in effect.

    ``lm`` and ``adapter`` are ``None`` when unset (a ``None`` adapter means a fresh
    ``ChatAdapter()``); ``trace`` is a list when calls should be recorded (optimizers set
    it with ``context(trace=[])``), else ``None``. Any other key given to
    :func:`configure` or :func:`context` is readable as an attribute or with :meth:`get`.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_values", MappingProxyType(dict(values)))

    @property
    def lm(self) -> Any:
        return self._values.get("lm")

    @property
    def adapter(self) -> Any:
        return self._values.get("adapter")

    @property
    def trace(self) -> list[Any] | None:
        return self._values.get("trace")

    def __getattr__(self, name: str) -> Any:
        values = object.__getattribute__(self, "_values")
        if name in values:
            return values[name]
        raise AttributeError(f"no configuration key {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("configuration is read-only here; use dspyq.configure or context")

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def __repr__(self) -> str:
        return f"Config({dict(self._values)!r})"


def configure(**kwargs: Any) -> None:
    """Set process-wide defaults, e.g. ``configure(lm=LM("openai/gpt-4o-mini"))``.

    Values set by an enclosing :func:`context` block still win inside that block.
    """
    with _global_lock:
        _global.update(kwargs)


@contextmanager
def context(**kwargs: Any) -> Iterator[Config]:
    """Override configuration inside a ``with`` block, for this thread or task only."""
    token = _overrides.set(MappingProxyType({**_overrides.get(), **kwargs}))
    try:
        yield current()
    finally:
        _overrides.reset(token)


def current() -> Config:
    """The configuration in effect here: global values with context overrides on top."""
    with _global_lock:
        values = dict(_global)
    values.update(_overrides.get())
    return Config(values)


def setting(key: str, default: Any = None) -> Any:
    """One configuration value in effect here, without a snapshot of the rest (LM calls
    read the bound cache and gate this way, several times per call)."""
    overrides = _overrides.get()
    if key in overrides:
        return overrides[key]
    return _global.get(key, default)


def bind_context(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap ``fn`` so it runs with the caller's configuration in whatever thread runs it.

    The overrides are captured now; each call runs in its own copy of them, so one
    wrapper may be run by several pool threads at once.
    """
    captured = contextvars.copy_context()

    def run_in_captured_context(*args: P.args, **kwargs: P.kwargs) -> R:
        return captured.copy().run(fn, *args, **kwargs)

    return run_in_captured_context


def reset_configuration() -> None:
    """Restore the process-wide defaults (for tests and long-lived workers)."""
    with _global_lock:
        _global.clear()
        _global.update(_DEFAULTS)

"""Callbacks, as DSPy's ``dspy.utils.callback``: handlers around module, LM and adapter calls.

A callback is a :class:`BaseCallback` subclass given to ``dspyq.configure(callbacks=[...])``
(every call) or to a component's ``callbacks`` list (that component). Each decorated
method calls ``on_<kind>_start(call_id, instance, inputs)`` before and
``on_<kind>_end(call_id, outputs, exception)`` after, where ``inputs`` are the call's
arguments by parameter name, as DSPy passes them. A handler that raises is logged and
skipped: observing a call must never change it.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from dspyq.core.context import setting

__all__ = ["ACTIVE_CALL_ID", "BaseCallback", "with_callbacks"]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

ACTIVE_CALL_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "dspyq_active_call_id", default=None
)


class BaseCallback:
    """Subclass and override the handlers you need; every handler does nothing here."""

    def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None: ...
    def on_module_end(
        self, call_id: str, outputs: Any | None, exception: BaseException | None = None
    ) -> None: ...
    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None: ...
    def on_lm_end(
        self, call_id: str, outputs: Any | None, exception: BaseException | None = None
    ) -> None: ...
    def on_adapter_format_start(
        self, call_id: str, instance: Any, inputs: dict[str, Any]
    ) -> None: ...
    def on_adapter_format_end(
        self, call_id: str, outputs: Any | None, exception: BaseException | None = None
    ) -> None: ...
    def on_adapter_parse_start(
        self, call_id: str, instance: Any, inputs: dict[str, Any]
    ) -> None: ...
    def on_adapter_parse_end(
        self, call_id: str, outputs: Any | None, exception: BaseException | None = None
    ) -> None: ...
    def on_tool_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None: ...
    def on_tool_end(
        self, call_id: str, outputs: Any | None, exception: BaseException | None = None
    ) -> None: ...
    def on_evaluate_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None: ...
    def on_evaluate_end(
        self, call_id: str, outputs: Any | None, exception: BaseException | None = None
    ) -> None: ...
    def on_compile_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None: ...
    def on_compile_end(
        self, call_id: str, outputs: Any | None, exception: BaseException | None = None
    ) -> None: ...


def _kind(instance: Any, fn: Callable[..., Any]) -> str:
    """Which handler pair a call uses, chosen by the instance's class as DSPy does."""
    from dspyq.adapters.base import Adapter
    from dspyq.lm import LM
    from dspyq.optimize.evaluate import Evaluate
    from dspyq.optimize.teleprompter import Teleprompter

    if isinstance(instance, LM) or getattr(instance, "is_lm", False) is True:
        return "lm"
    if isinstance(instance, Evaluate):
        return "evaluate"
    if isinstance(instance, Teleprompter):
        return "compile"
    if isinstance(instance, Adapter):
        return f"adapter_{fn.__name__}"
    if type(instance).__name__ == "Tool":
        return "tool"
    return "module"


def _active_callbacks(instance: Any) -> list[Any]:
    # Not ``list(...)`` of the instance's own: a non-list there fails here with DSPy's
    # TypeError ("can only concatenate list (not "int") to list").
    own = getattr(instance, "callbacks", None)
    return list(setting("callbacks") or []) + (own if own is not None else [])


def _start(instance: Any, fn: Callable[..., Any], call_id: str, callbacks: list[Any], args: Any,
           kwargs: Any) -> None:  # fmt: skip
    inputs = inspect.getcallargs(fn, instance, *args, **kwargs)
    inputs.pop("self", None)
    kind = _kind(instance, fn)
    for callback in callbacks:
        try:
            getattr(callback, f"on_{kind}_start")(call_id=call_id, instance=instance, inputs=inputs)
        except Exception as exc:
            logger.warning("Error when calling callback %s: %s", callback, exc)


def _end(instance: Any, fn: Callable[..., Any], call_id: str, callbacks: list[Any], results: Any,
         exception: BaseException | None) -> None:  # fmt: skip
    kind = _kind(instance, fn)
    for callback in callbacks:
        try:
            getattr(callback, f"on_{kind}_end")(
                call_id=call_id, outputs=results, exception=exception
            )
        except Exception as exc:
            logger.warning(
                "Error when applying callback %s's end handler on function %s: %s.",
                callback,
                fn.__name__,
                exc,
            )


def with_callbacks(fn: F) -> F:
    """Decorate an instance method so the active callbacks see each call."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(instance: Any, *args: Any, **kwargs: Any) -> Any:
            callbacks = _active_callbacks(instance)
            if not callbacks:
                return await fn(instance, *args, **kwargs)
            call_id = uuid.uuid4().hex
            _start(instance, fn, call_id, callbacks, args, kwargs)
            token = ACTIVE_CALL_ID.set(call_id)
            results, exception = None, None
            try:
                results = await fn(instance, *args, **kwargs)
                return results
            except BaseException as exc:
                exception = exc
                raise
            finally:
                ACTIVE_CALL_ID.reset(token)
                _end(instance, fn, call_id, callbacks, results, exception)

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def sync_wrapper(instance: Any, *args: Any, **kwargs: Any) -> Any:
        callbacks = _active_callbacks(instance)
        if not callbacks:
            return fn(instance, *args, **kwargs)
        call_id = uuid.uuid4().hex
        _start(instance, fn, call_id, callbacks, args, kwargs)
        token = ACTIVE_CALL_ID.set(call_id)
        results, exception = None, None
        try:
            results = fn(instance, *args, **kwargs)
            return results
        except BaseException as exc:
            exception = exc
            raise
        finally:
            ACTIVE_CALL_ID.reset(token)
            _end(instance, fn, call_id, callbacks, results, exception)

    return sync_wrapper  # type: ignore[return-value]

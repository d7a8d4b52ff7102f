"""A circuit breaker per provider whose state every worker process shares through Redis.

pybreaker supplies the model: its storage contract (``CircuitBreakerStorage``: state,
fail counter, success counter, opened_at), its vocabulary of states and its rule of
which exceptions are the system's fault (``exclude``, ``is_system_error``).
:class:`~dspyq.resilience.breaker_storage.RedisBreakerStorage` implements that contract
over one Redis hash per provider (see that module for why not pybreaker's own).

pybreaker's ``call`` is not used either: it holds one lock around the guarded call
(threads of a worker would run their LM calls one at a time), lets every process that
sees the timeout elapse through as a "probe", and its ``call_async`` needs tornado. Here each transition is one Lua
script, atomic across processes and timed by Redis's clock, so exactly one caller
wins the half-open probe, and no lock is held while the guarded call runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import pybreaker
from redis import Redis

from dspyq.errors import (
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    InputError,
    RateLimitExceededError,
)
from dspyq.resilience.breaker_storage import AdmitReply, RedisBreakerStorage
from dspyq.settings import get_settings

__all__ = [
    "DEFAULT_EXCLUDED",
    "Admission",
    "BreakerStatus",
    "CircuitBreaker",
    "RedisBreakerStorage",
    "StateListener",
]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

StateListener = Callable[[str, str, str], None]
"""Called as ``listener(provider, old_state, new_state)`` after a transition."""

Exclusion = type[BaseException] | Callable[[BaseException], bool]

DEFAULT_EXCLUDED: tuple[Exclusion, ...] = (
    # The caller's fault: the provider answered, so it is up.
    BadRequestError,  # includes ContextWindowExceededError
    AuthenticationError,
    InputError,
    # dspyq's own fail-fast refusals say nothing about the provider.
    CircuitOpenError,
    RateLimitExceededError,
)
"""Exceptions that do not count as failures (pybreaker's ``exclude``)."""

_US = 1_000_000


@dataclass(frozen=True)
class Admission:
    """A call let through by the breaker.

    ``token``: set when it is the half-open breaker's one probe, which holds the breaker
    like a lock (only the holder's outcome counts). ``clean``: the breaker was closed
    with no failures counted, so its success has nothing to record (skipping that
    record saves a Redis round trip on nearly every call; a failure counted by another
    process meanwhile is reset by the next success whose admission sees it).
    """

    clean: bool
    token: str = ""

    @property
    def probe(self) -> bool:
        return bool(self.token)


@dataclass(frozen=True)
class BreakerStatus:
    """A breaker as a dashboard shows it."""

    provider: str
    state: str
    fail_counter: int
    fail_max: int
    retry_after: float
    """Seconds until the breaker lets a probe through (0.0 unless open)."""


class CircuitBreaker:
    """Fails fast on a provider that keeps failing, for every process sharing Redis.

    Closed: calls pass; ``fail_max`` consecutive failures (counted across processes)
    open it. Open: calls raise CircuitOpenError without running, until
    ``reset_timeout`` seconds have passed. Half-open: exactly one caller runs as the
    probe; its success closes the breaker, its failure re-opens it. A probe that
    never reports (its process died) loses its turn after ``probe_timeout`` seconds
    (default: the larger of ``reset_timeout`` and 30 s).
    """

    def __init__(
        self,
        redis: Redis,
        provider: str,
        fail_max: int = 5,
        reset_timeout: float = 30.0,
        key_prefix: str = "dspyq",
        exclude: Iterable[Exclusion] | None = None,
        listeners: Iterable[StateListener] = (),
        probe_timeout: float | None = None,
    ) -> None:
        self.provider = provider
        self.storage = RedisBreakerStorage(
            redis, f"{key_prefix}:breaker:{provider}", ttl=max(86_400.0, 2 * reset_timeout)
        )
        # pybreaker holds the thresholds and decides what counts as a failure.
        self._policy = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_timeout,
            exclude=list(DEFAULT_EXCLUDED if exclude is None else exclude),
            state_storage=self.storage,
            name=provider,
        )
        self.probe_timeout = (
            probe_timeout if probe_timeout is not None else max(reset_timeout, 30.0)
        )
        self._listeners: list[StateListener] = list(listeners)

    @classmethod
    def for_provider(
        cls, redis: Redis, provider: str, key_prefix: str = "dspyq", **kwargs: Any
    ) -> CircuitBreaker:
        """The breaker of a provider with ``fail_max`` and ``reset_timeout`` from settings."""
        conf = get_settings().provider(provider)
        return cls(
            redis,
            provider,
            fail_max=conf.breaker_fail_max,
            reset_timeout=conf.breaker_reset_timeout,
            key_prefix=key_prefix,
            **kwargs,
        )

    @property
    def fail_max(self) -> int:
        return self._policy.fail_max

    @property
    def reset_timeout(self) -> float:
        return float(self._policy.reset_timeout)

    def add_listener(self, listener: StateListener) -> None:
        """Call ``listener(provider, old, new)`` on each transition this process makes.

        Each transition is made by exactly one process, so across a pool every
        change is reported once.
        """
        self._listeners.append(listener)

    def status(self) -> BreakerStatus:
        """State, failures and time to half-open, as of Redis's clock now."""
        snap = self.storage.snapshot()
        state, wait = snap.state, 0.0
        if state == pybreaker.STATE_OPEN:
            wait = max(0.0, (snap.opened_at_us - snap.now_us) / _US + self.reset_timeout)
            if wait == 0.0:
                state = pybreaker.STATE_HALF_OPEN  # the next call will be the probe
        return BreakerStatus(self.provider, state, snap.fail_counter, self.fail_max, wait)

    @property
    def state(self) -> str:
        """ "closed", "open" or "half-open" (an open breaker whose timeout elapsed is half-open)."""
        return self.status().state

    def reset(self) -> None:
        """Close the breaker and forget its failures (an operator's override)."""
        old = self.storage.snapshot().state
        self.storage.clear()
        if old != pybreaker.STATE_CLOSED:
            self._notify(old, pybreaker.STATE_CLOSED)

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` unless the breaker is open; record the outcome for every process."""
        return self.call_admitted(self._admit(), fn, *args, **kwargs)

    def admitted(self, admission: AdmitReply) -> Admission:
        """Judge a reply of :meth:`RedisBreakerStorage.admit` (fetched by the caller, e.g.
        in one script with the rate limiter): raises CircuitOpenError while open."""
        verdict, wait, old, failures, token = admission
        if old:
            self._notify(old, pybreaker.STATE_HALF_OPEN)
        if verdict == 0:
            raise CircuitOpenError(
                f"circuit breaker of provider {self.provider!r} is open after repeated "
                f"failures; calls fail fast for {wait:.2f}s more",
                context={"provider": self.provider, "fail_max": self.fail_max},
                retry_after=wait,
            )
        return Admission(clean=verdict == 1 and failures == 0, token=token if verdict == 2 else "")

    def give_back(self, admission: Admission) -> None:
        """An admitted call that will not run: a probe gives its turn to the next caller."""
        if admission.probe:
            self._release_probe(admission.token)

    def call_admitted(
        self, admission: Admission, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``fn``, already admitted (see :meth:`admitted`); record its outcome."""
        token = admission.token
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            self._record_error(exc, token)
            raise
        except BaseException:
            # Interrupted, not failed: say nothing about the provider.
            self.give_back(admission)
            raise
        if not admission.clean:
            self._record_success(token)
        return result

    async def call_async(
        self, coro_fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """:meth:`call` for coroutine functions; Redis calls run off the event loop."""
        admission = await asyncio.to_thread(self._admit)
        return await self.call_admitted_async(admission, coro_fn, *args, **kwargs)

    async def call_admitted_async(
        self,
        admission: Admission,
        coro_fn: Callable[P, Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """:meth:`call_admitted` for coroutine functions."""
        token = admission.token
        try:
            result = await coro_fn(*args, **kwargs)
        except Exception as exc:
            await asyncio.to_thread(self._record_error, exc, token)
            raise
        except BaseException:
            # Cancelled: release synchronously, a second cancellation cannot skip it.
            self.give_back(admission)
            raise
        if not admission.clean:
            await asyncio.to_thread(self._record_success, token)
        return result

    # --- internals -------------------------------------------------------------------

    def _admit(self) -> Admission:
        """Ask Redis whether a call may run now (see :class:`Admission`)."""
        return self.admitted(self.storage.admit(self.reset_timeout, self.probe_timeout))

    def _record_error(self, exc: Exception, probe: str) -> None:
        if not self._policy.is_system_error(exc):
            self._record_success(probe)
            return
        try:
            old = self.storage.record_failure(self.fail_max, probe)
        except Exception:
            # The caller gets the provider's error; this one is logged, not lost.
            logger.exception("could not record a failure of provider %r", self.provider)
            return
        if old:
            self._notify(old, pybreaker.STATE_OPEN)

    def _record_success(self, probe: str) -> None:
        try:
            old = self.storage.record_success(probe)
        except Exception:
            logger.exception("could not record a success of provider %r", self.provider)
            return
        if old:
            self._notify(old, pybreaker.STATE_CLOSED)

    def _release_probe(self, token: str) -> None:
        try:
            self.storage.release_probe(token)
        except Exception:
            logger.exception("could not release the probe of provider %r", self.provider)

    def _notify(self, old: str, new: str) -> None:
        logger.info("circuit breaker %r: %s -> %s", self.provider, old, new)
        for listener in self._listeners:
            try:
                listener(self.provider, old, new)
            except Exception:
                logger.exception("circuit breaker listener %r failed", listener)

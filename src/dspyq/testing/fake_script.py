"""The fake LM server's steerable state: configuration, answer rules, failures, request log.

It is shared by the HTTP handlers (in the server's event-loop thread) and by the test
(in its own thread, or over HTTP from another process), so every access goes through
one lock. Everything here has a JSON form, so the same script can come from Python,
a file (``dspyq fake-lm --script file.json``) or ``POST /_fake/script``.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dspyq.testing.fake_finetune import FineTuneStore

# Header names whose values are secrets: logged as REDACTED.
SECRET_HEADERS = frozenset(
    {"authorization", "x-api-key", "api-key", "proxy-authorization", "cookie"}
)

FailureKind = Literal[
    "status",
    "malformed",
    "truncated",
    "slow",
    "context_length",
    "stream_error",
    "insufficient_quota",
    "reset",
    "slow_first_byte",
]


class FakeConfig(BaseModel):
    """Knobs that hold until changed (``POST /_fake/config``)."""

    model_config = ConfigDict(extra="forbid")

    latency: float = 0.0
    latency_jitter: float = 0.0
    chunk_delay: float = 0.0
    error_rate: float = 0.0
    error_status: int = 500
    seed: int = 0
    rate_limit_every: int | None = None
    retry_after: float = 1.0
    api_key: str | None = None
    max_context_tokens: int | None = None
    # When set, a request for any other model gets the provider's model-not-found 404.
    models: list[str] | None = None
    # Rate-limit headers: the budget per ``ratelimit_window`` seconds (None: unlimited,
    # headers still sent); a request over it gets a 429 until the window resets.
    ratelimit_requests: int | None = None
    ratelimit_tokens: int | None = None
    ratelimit_window: float = 60.0
    # Fine-tuning jobs (see :mod:`dspyq.testing.fake_finetune`): seconds from creation to
    # success, and the fewest examples a training file may hold (OpenAI's is 10).
    finetune_seconds: float = 0.3
    finetune_min_examples: int = 10

    def listed_models(self) -> list[str]:
        return self.models if self.models is not None else ["fake-model"]


class ToolCall(BaseModel):
    """A tool call a rule answers with (``tool_calls`` / ``tool_use`` / ``function_call``)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class AnswerRule(BaseModel):
    """``match`` (a regex searched in the whole conversation; None matches all) -> an answer.

    Give ``answer`` (raw text), ``answers`` (raw texts served in turn, one per choice
    or request), or ``fields`` (values rendered in the format the prompt asked for).
    ``tool_calls`` adds tool calls (with ``answer`` as the text beside them, if given).
    ``times`` makes the rule expire after that many uses.
    """

    model_config = ConfigDict(extra="forbid")

    match: str | None = None
    answer: str | None = None
    answers: list[str] | None = None
    fields: dict[str, Any] | None = None
    tool_calls: list[ToolCall] | None = None
    times: int | None = None
    used: int = 0

    @field_validator("match")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            re.compile(value)
        return value

    def matches(self, text: str) -> bool:
        return self.match is None or _pattern(self.match).search(text) is not None


@lru_cache(maxsize=65_536)
def _pattern(match: str) -> re.Pattern[str]:
    """Compiled once: ``re``'s own cache holds 512, and a script with one rule per job
    (a thousand) would recompile every rule on every request, under the state's lock."""
    return re.compile(match, re.DOTALL)


class Failure(BaseModel):
    """What the next ``count`` requests get instead of an answer.

    ``status``: that HTTP status with a protocol-shaped error body (and Retry-After
    when ``retry_after`` is set; 429 gets the server's default if unset);
    ``malformed``: 200 with a body that is not JSON; ``truncated``: 200 with half a
    JSON body, or a stream cut before its end marker; ``slow``: wait ``delay``
    seconds, then answer normally; ``context_length``: the protocol's
    prompt-too-long 400; ``stream_error``: a stream that breaks off with the protocol's
    error event after its first text chunk (a non-streaming request gets a 500);
    ``insufficient_quota``: OpenAI's billing 429 (Anthropic's "credit balance is too
    low" 400), which no wait cures; ``reset``: 200 headers and part of the body, then
    the connection drops; ``slow_first_byte``: headers at once, the body after
    ``delay`` seconds. ``code`` overrides the error body's code, ``retry_after_ms``
    sends ``retry-after-ms`` (OpenAI's finer hint) and ``headers`` adds any headers.
    """

    model_config = ConfigDict(extra="forbid")

    kind: FailureKind = "status"
    status: int = 500
    retry_after: float | None = None
    retry_after_ms: int | None = None
    count: int = 1
    delay: float = 0.0
    message: str | None = None
    code: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)


@dataclass
class Picked:
    """What a rule chose: texts, or field values to render, and tool calls."""

    texts: list[str] | None
    fields: dict[str, Any] | None
    tool_calls: list[ToolCall]


@dataclass(frozen=True)
class Budget:
    """The rate-limit window after a request: what the headers say, and whether it was over."""

    limit_requests: int
    remaining_requests: int
    limit_tokens: int
    remaining_tokens: int
    reset: float
    over: bool


class FakeScript(BaseModel):
    """A whole script: config keys at top level, plus rules and failures."""

    model_config = ConfigDict(extra="forbid")

    rules: list[AnswerRule] = Field(default_factory=list)
    failures: list[Failure] = Field(default_factory=list)


def redact_headers(headers: dict[str, str]) -> tuple[dict[str, str], bool]:
    """Headers with secret values replaced by ``REDACTED``, and whether a key was sent."""
    clean: dict[str, str] = {}
    had_key = False
    for name, value in headers.items():
        lower = name.lower()
        if lower in SECRET_HEADERS:
            if lower in ("authorization", "x-api-key", "api-key") and value.strip() not in (
                "",
                "Bearer",
            ):
                had_key = True
            clean[lower] = "REDACTED"
        else:
            clean[lower] = value
    return clean, had_key


class FakeLMState:
    """Config, rules, pending failures, counters and the request log, behind one lock."""

    def __init__(self, config: FakeConfig | None = None) -> None:
        self._lock = threading.Lock()
        self._initial = (config or FakeConfig()).model_copy(deep=True)
        self.config = self._initial.model_copy(deep=True)
        self.rules: list[AnswerRule] = []
        self.failures: deque[Failure] = deque()
        self.log: list[dict[str, Any]] = []
        self.count = 0
        self.rng = random.Random(self.config.seed)
        self._window_start = time.monotonic()
        self._used = (0, 0)
        self.finetunes = FineTuneStore()

    # --- steering --------------------------------------------------------------------

    def configure(self, **changes: Any) -> FakeConfig:
        """Change config keys (validated); a new ``seed`` reseeds the error RNG."""
        with self._lock:
            merged = {**self.config.model_dump(), **changes}
            self.config = FakeConfig.model_validate(merged)
            if "seed" in changes:
                self.rng = random.Random(self.config.seed)
            return self.config.model_copy()

    def add_rules(self, rules: list[AnswerRule], *, replace: bool = False) -> None:
        with self._lock:
            if replace:
                self.rules = []
            self.rules.extend(rules)

    def add_failures(self, failures: list[Failure]) -> None:
        with self._lock:
            self.failures.extend(f for f in failures if f.count > 0)

    def apply(self, data: dict[str, Any]) -> None:
        """Apply a JSON script: top-level config keys, ``rules`` (appended) and ``failures``."""
        data = dict(data)
        script = FakeScript.model_validate(
            {"rules": data.pop("rules", []), "failures": data.pop("failures", [])}
        )
        if data:
            self.configure(**data)
        self.add_rules(script.rules)
        self.add_failures(script.failures)

    def reset(self) -> None:
        """Back to the configuration the server started with, no rules, empty log."""
        with self._lock:
            self.config = self._initial.model_copy(deep=True)
            self.rules = []
            self.failures.clear()
            self.log = []
            self.count = 0
            self.rng = random.Random(self.config.seed)
            self._window_start = time.monotonic()
            self._used = (0, 0)
        self.finetunes.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "config": self.config.model_dump(),
                "rules": [r.model_dump() for r in self.rules],
                "failures": [f.model_dump() for f in self.failures],
                "requests_seen": self.count,
            }

    # --- the request log --------------------------------------------------------------

    def log_request(
        self, method: str, path: str, headers: dict[str, str], body: Any, protocol: str
    ) -> dict[str, Any]:
        clean, had_key = redact_headers(headers)
        with self._lock:
            self.count += 1
            entry: dict[str, Any] = {
                "id": self.count,
                "time": time.time(),
                "method": method,
                "path": path,
                "protocol": protocol,
                "headers": clean,
                "had_key": had_key,
                "body": body,
                "status": None,
                "outcome": None,
            }
            self.log.append(entry)
            return entry

    def finish_request(self, entry: dict[str, Any], status: int, outcome: str) -> None:
        """Note how a logged request was answered."""
        with self._lock:
            entry["status"] = status
            entry["outcome"] = outcome

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self.log]

    def clear_requests(self) -> None:
        with self._lock:
            self.log = []

    # --- deciding an outcome ------------------------------------------------------------

    def latency(self) -> float:
        with self._lock:
            jitter = (
                self.rng.uniform(0, self.config.latency_jitter)
                if self.config.latency_jitter
                else 0.0
            )
            return self.config.latency + jitter

    def next_failure(self, request_number: int) -> Failure | None:
        """The failure this request gets, if any: scripted first, then 429 mode, then error rate."""
        with self._lock:
            if self.failures:
                failure = self.failures[0]
                if failure.count <= 1:
                    self.failures.popleft()
                else:
                    self.failures[0] = failure.model_copy(update={"count": failure.count - 1})
                return failure
            conf = self.config
            if conf.rate_limit_every and request_number % conf.rate_limit_every == 0:
                return Failure(kind="status", status=429, retry_after=conf.retry_after)
            if conf.error_rate and self.rng.random() < conf.error_rate:
                return Failure(kind="status", status=conf.error_status)
        return None

    def pick_answers(self, conversation: str, n: int) -> Picked:
        """Raw texts (one per choice), field values and tool calls of the first matching rule."""
        with self._lock:
            for rule in list(self.rules):
                if not rule.matches(conversation):
                    continue
                rule.used += 1
                if rule.times is not None and rule.used >= rule.times:
                    self.rules.remove(rule)
                calls = list(rule.tool_calls or [])
                if rule.answers:
                    start = rule.used - 1
                    texts = [rule.answers[(start * n + i) % len(rule.answers)] for i in range(n)]
                    return Picked(texts, None, calls)
                if rule.answer is not None:
                    return Picked([rule.answer] * n, None, calls)
                if calls and rule.fields is None:
                    return Picked([""] * n, None, calls)
                return Picked(None, dict(rule.fields or {}), calls)
        return Picked(None, None, [])

    def take_budget(self, tokens: int) -> Budget:
        """Spend one request and ``tokens`` from the rate-limit window (if one is set)."""
        with self._lock:
            conf = self.config
            now = time.monotonic()
            if now - self._window_start >= conf.ratelimit_window:
                self._window_start, self._used = now, (0, 0)
            reset = max(0.0, conf.ratelimit_window - (now - self._window_start))
            requests, used_tokens = self._used
            limit_r = conf.ratelimit_requests
            limit_t = conf.ratelimit_tokens
            over = (limit_r is not None and requests >= limit_r) or (
                limit_t is not None and used_tokens >= limit_t
            )
            if not over:
                requests, used_tokens = requests + 1, used_tokens + tokens
                self._used = (requests, used_tokens)
            return Budget(
                limit_requests=limit_r or 10_000,
                remaining_requests=max(0, (limit_r or 10_000) - requests),
                limit_tokens=limit_t or 10_000_000,
                remaining_tokens=max(0, (limit_t or 10_000_000) - used_tokens),
                reset=reset if (limit_r or limit_t) else 0.0,
                over=over,
            )

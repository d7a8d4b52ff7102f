"""Typed configuration from ``DSPYQ_*`` environment variables, a ``.env`` file or code.

Nested keys use ``__``: ``DSPYQ_PROVIDERS__OPENAI__API_KEY``,
``DSPYQ_PROVIDERS__OPENAI__RATE_LIMIT=600/m``, ``DSPYQ_CACHE__TTL=3600``.
Defaults follow the seed's configuration schema.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*([smh])\s*$")
_PERIOD_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(rate: str) -> tuple[float, float]:
    """``"600/m"`` -> ``(600.0, 60.0)``: requests allowed per period in seconds."""
    match = _RATE_RE.match(rate)
    if not match:
        raise ValueError(f"rate limit {rate!r} must look like N/s, N/m or N/h (e.g. 600/m)")
    return float(match.group(1)), _PERIOD_SECONDS[match.group(2)]


PrivacyLevel = Literal["standard", "medium", "high"]
"""How much a job's data is protected: see :mod:`dspyq.lm.privacy`."""


class PrivacySettings(BaseModel):
    """``standard``: as sent. ``medium``: personal data redacted from a job's inputs.
    ``high``: also from demos and history, and completions are checked (see README)."""

    level: PrivacyLevel = "standard"


class ProviderSettings(BaseModel):
    """One LM provider: where it is, how to authenticate, and how hard to push it."""

    model_config = ConfigDict(extra="allow")

    kind: str = Field(default="openai", description="Protocol: 'openai' or 'anthropic'.")
    api_base: str | None = None
    api_key: SecretStr | None = None
    timeout: float = 30.0
    num_retries: int = 3
    rate_limit: str = "50/m"
    # Seconds a request may reach the provider after its grant (network, a busy worker)
    # with the provider still counting at most rate_limit per period: see ratelimit.py.
    rate_limit_jitter: float = Field(default=0.1, ge=0)
    tokens_per_minute: int | None = None
    breaker_fail_max: int = 5
    breaker_reset_timeout: float = 30.0
    redact: bool = False
    # This pool's privacy level (see PrivacySettings); the strictest that applies wins.
    privacy_level: PrivacyLevel | None = None

    @field_validator("rate_limit")
    @classmethod
    def _check_rate(cls, value: str) -> str:
        parse_rate(value)
        return value


def _default_providers() -> dict[str, ProviderSettings]:
    return {
        "openai": ProviderSettings(kind="openai", api_base="https://api.openai.com/v1"),
        "anthropic": ProviderSettings(kind="anthropic", api_base="https://api.anthropic.com"),
        "local": ProviderSettings(kind="openai", api_base="http://127.0.0.1:8000/v1"),
    }


class CacheSettings(BaseModel):
    enabled: bool = True
    ttl: int = 3600
    max_entries: int = 10_000
    # Read the SQL cache on every Redis miss, not only while Redis may lack one of its
    # answers (see dspyq.lm.cache_coverage): for deployments of different key prefixes
    # sharing one database, whose answers the others' Redis never holds.
    always_read_sql: bool = False


class CoproSettings(BaseModel):
    breadth: int = 10
    depth: int = 3
    init_temperature: float = 1.4


class BootstrapSettings(BaseModel):
    max_bootstrapped_demos: int = 4
    max_labeled_demos: int = 16
    max_rounds: int = 1

    def limits(
        self,
        max_bootstrapped_demos: int | None,
        max_labeled_demos: int | None,
        max_rounds: int | None,
    ) -> tuple[int, int, int]:
        """A bootstrapping optimizer's demo counts and rounds: each one given, or ours."""
        return (
            self.max_bootstrapped_demos
            if max_bootstrapped_demos is None
            else max_bootstrapped_demos,
            self.max_labeled_demos if max_labeled_demos is None else max_labeled_demos,
            self.max_rounds if max_rounds is None else max_rounds,
        )


class OptimizationSettings(BaseModel):
    model_config = ConfigDict(extra="allow")

    copro: CoproSettings = CoproSettings()
    bootstrap: BootstrapSettings = BootstrapSettings()


class DegradationSettings(BaseModel):
    """The last resort when every provider of a job is unavailable (see README)."""

    # Answer from an expired cached answer (marked stale) instead of failing the job.
    stale_cache: bool = False
    # Seconds past its expiry a cached answer may still be served; None: any age.
    stale_grace: float | None = Field(default=86_400.0, ge=0)


class TelemetrySettings(BaseModel):
    """Metrics and tracing of workers and clients (see README, Telemetry)."""

    # Port of a worker's Prometheus /metrics; `dspyq worker --metrics-port` overrides it.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # OTLP/HTTP collector base URL (e.g. http://127.0.0.1:4318); unset = no tracing.
    otlp_endpoint: str | None = None
    service_name: str = "dspyq"


class WatchSettings(BaseModel):
    """The performance watcher (``dspyq watch``): its windows, the seed's thresholds, and
    how it judges canaries. Live: ``dspyq config set watch.module_execution_p95_ms 3000``."""

    window_seconds: float = Field(default=300.0, gt=0)
    # How often the watcher looks; window ends are aligned to it, so every watcher
    # judges the same windows.
    interval_seconds: float = Field(default=15.0, gt=0)
    module_execution_p95_ms: float = Field(default=5000.0, gt=0)
    lm_request_failure_rate: float = Field(default=0.05, ge=0, le=1)
    # Iterations of a running optimization without a better score.
    optimization_stagnation: int = Field(default=10, ge=1)
    # Executions (or LM calls) a window needs before its p95 (or failure rate) is judged.
    min_samples: int = Field(default=5, ge=1)
    # Alert when an alias served jobs in the previous window and none in this one.
    traffic_stopped: bool = False
    # Canary defaults (each deployment may set its own): executions the canary needs
    # before it is judged, and how long it runs before promotion.
    canary_min_samples: int = Field(default=20, ge=1)
    canary_window_seconds: float = Field(default=300.0, gt=0)
    # A canary still short of its samples this long after its traffic moved (at least
    # its window) is decided without them: promoted, as nothing showed it worse (the
    # issue's rule), or rolled back for those who would rather not; with an alert.
    canary_max_wait_seconds: float = Field(default=3600.0, gt=0)
    canary_undersampled: Literal["promote", "rollback"] = "promote"
    # A canary breaches when its p95 exceeds the stable version's by this factor, its
    # LM failure rate the stable one's by this margin, or its mean feedback score falls
    # below the stable one's by this margin.
    canary_p95_ratio: float = Field(default=1.5, ge=1)
    # p95s under this are not compared: a few milliseconds more is noise, not a breach.
    canary_min_p95_ms: float = Field(default=250.0, ge=0)
    canary_failure_rate_margin: float = Field(default=0.05, ge=0)
    canary_score_margin: float = Field(default=0.1, ge=0)
    # Start an improvement run (client.improve) for a program whose alias alerted.
    improve_on_alert: bool = False
    improve_metric: str | None = None
    improve_alias: str = "production"
    # Seconds the leading watcher holds its Redis lock without renewing it.
    leader_ttl_seconds: float = Field(default=30.0, gt=0)


class BrokerSettings(BaseModel):
    """How jobs are queued on a RabbitMQ broker (see README, Scaling out)."""

    # Declare every queue as a quorum queue (replicated, at-least-once): x-queue-type quorum.
    quorum_queues: bool = False
    # Deliveries of one message before a quorum queue drops it (a job that kills every
    # worker that takes it). None: RabbitMQ's own default.
    delivery_limit: int | None = Field(default=20, ge=1)


REDIS_SCHEMES = ("redis", "rediss", "unix", "sentinel")
"""URL schemes of a Redis server: plain, TLS, a Unix socket, or found through Sentinel."""


class Settings(BaseSettings):
    """All of dspyq's settings. Application keys beyond dspyq's own are kept, not dropped."""

    model_config = SettingsConfigDict(
        env_prefix="DSPYQ_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="allow",
    )

    broker_url: str = "redis://127.0.0.1:6379/0"
    redis_url: str | None = None
    database_url: str = "sqlite:///dspyq.db"
    key_prefix: str = "dspyq"
    broker_visibility_timeout: int = 3600
    task_time_limit: int = 600
    default_lm: str | None = None
    # Address a worker's Prometheus /metrics listens on: this machine only unless widened
    # (e.g. 0.0.0.0), as Flower's --address is.
    metrics_host: str = "127.0.0.1"
    # Client.map sends up to this many jobs per message (1: one message per job).
    map_batch_size: int = Field(default=20, ge=1, le=1000)
    allowed_imports: list[str] | None = None
    # Largest JSON size of one job's inputs; larger ones are refused before enqueue.
    max_input_bytes: int = Field(default=1_048_576, gt=0)
    # 0 keeps DSPy 3.4.1's behaviour exactly; see dspyq.adapters.repair.
    max_parse_retries: int = Field(default=0, ge=0)
    # Seconds between polls of a fine-tuning job where the runtime setting of that name
    # is not set (20: DSPy's); see dspyq.lm.providers.openai_finetune.
    finetune_poll_interval: float = Field(default=20.0, gt=0)
    # How a worker's LM calls POST: "transport" skips httpx.Client's layers for the JSON
    # POST (see dspyq.lm.providers.transport), "client" goes through httpx.Client.post.
    lm_http_path: Literal["client", "transport"] = "transport"
    providers: dict[str, ProviderSettings] = Field(default_factory=_default_providers)
    cache: CacheSettings = CacheSettings()
    optimization: OptimizationSettings = OptimizationSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    degradation: DegradationSettings = DegradationSettings()
    watch: WatchSettings = WatchSettings()
    privacy: PrivacySettings = PrivacySettings()
    broker: BrokerSettings = BrokerSettings()

    @field_validator("providers", mode="before")
    @classmethod
    def _merge_default_providers(cls, value: Any) -> Any:
        # An env var for one key of one provider must not wipe the others' defaults.
        if not isinstance(value, dict):
            return value
        merged: dict[str, Any] = {k: v.model_dump() for k, v in _default_providers().items()}
        for name, conf in value.items():
            key = name.lower()
            if isinstance(conf, ProviderSettings):
                conf = conf.model_dump()
            base = merged.get(key, {"kind": "openai"})
            merged[key] = {**base, **{k.lower(): v for k, v in dict(conf).items()}}
        return merged

    @property
    def broker_is_redis(self) -> bool:
        """Whether the broker is a Redis server (else RabbitMQ or another kombu transport)."""
        return self.broker_url.partition("://")[0].lower() in REDIS_SCHEMES

    @property
    def effective_redis_url(self) -> str:
        """The Redis of shared state (results, limiter, breaker, caches, pub/sub).

        ``DSPYQ_REDIS_URL``, or the broker when the broker is a Redis. Raises
        :class:`~dspyq.errors.ConfigurationError` for any other broker without one.
        """
        if self.redis_url:
            return self.redis_url
        if self.broker_is_redis:
            return self.broker_url
        from dspyq.errors import ConfigurationError

        scheme = self.broker_url.partition("://")[0] or self.broker_url
        raise ConfigurationError(
            f"the broker is {scheme}://, not Redis, and dspyq keeps results, rate limits, "
            "breakers and caches in Redis: set DSPYQ_REDIS_URL=redis://host:6379/0 "
            "(or sentinel://host:26379;sentinel://host2:26379/0?master_name=mymaster)",
            context={"broker_scheme": scheme},
        )

    def provider(self, name: str) -> ProviderSettings:
        from dspyq.errors import ConfigurationError

        try:
            return self.providers[name]
        except KeyError:
            known = ", ".join(sorted(self.providers))
            raise ConfigurationError(
                f"unknown provider {name!r}; configured providers: {known}. "
                f"Add one with DSPYQ_PROVIDERS__{name.upper()}__API_BASE=...",
                context={"provider": name},
            ) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()


def reload_settings() -> Settings:
    """Forget the cached settings and read them again (after the environment changed)."""
    get_settings.cache_clear()
    return get_settings()


def split_model(model: str) -> tuple[str, str]:
    """``"openai/gpt-4o-mini"`` -> ``("openai", "gpt-4o-mini")``; ConfigurationError if malformed.

    A bare ``ft:...`` name is an OpenAI fine-tuned model, as DSPy reads it (its
    ``LM.finetune`` returns an LM named so).
    """
    if (model or "").startswith("ft:") and "/" not in model:
        return "openai", model
    prefix, sep, name = (model or "").partition("/")
    if not sep or not prefix.strip() or not name.strip():
        from dspyq.errors import ConfigurationError

        known = ", ".join(sorted(get_settings().providers))
        raise ConfigurationError(
            f"model {model!r} must be written 'provider/model' (e.g. 'openai/gpt-4o-mini'); "
            f"configured providers: {known}",
            context={"model": model},
        )
    return prefix.strip().lower(), name.strip()


# --- DSPy's ``dspy.settings``: the runtime configuration under the same module name ---
# ``dspyq.settings.configure(lm=...)`` and ``dspyq.settings.lm`` read as in DSPy; the
# typed deployment settings above keep their own names (``get_settings`` ...).

# DSPy's defaults for the runtime keys its users read from ``dspy.settings``.
_RUNTIME_DEFAULTS: dict[str, Any] = {
    "num_threads": 8,
    "max_errors": 10,
    "async_max_workers": 8,
    "track_usage": False,
    "usage_tracker": None,
    "callbacks": [],
    "provide_traceback": False,
    "send_stream": None,
    "rm": None,
}


def configure(**kwargs: Any) -> None:
    """Alias of :func:`dspyq.configure` (DSPy's ``dspy.settings.configure``)."""
    from dspyq.core.context import configure as configure_runtime

    configure_runtime(**kwargs)


def context(**kwargs: Any) -> Any:
    """Alias of :func:`dspyq.context` (DSPy's ``dspy.settings.context``)."""
    from dspyq.core.context import context as runtime_context

    return runtime_context(**kwargs)


def __getattr__(name: str) -> Any:
    # ``dspyq.settings.lm`` and friends: the runtime configuration in effect here.
    from dspyq.core.context import current

    config = current()
    if name in config:
        return config.get(name)
    if name in _RUNTIME_DEFAULTS:
        return _RUNTIME_DEFAULTS[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

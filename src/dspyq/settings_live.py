"""Live overrides of settings: which keys may change while workers run, and the check.

An override is a dotted key of :class:`~dspyq.settings.Settings` (``cache.ttl``,
``providers.openai.rate_limit``) and a value. :func:`with_overrides` builds the
settings that result from applying overrides to a base, validated as a whole, so an
invalid value is refused before anything is stored or applied. Where overrides are kept
and how workers hear of them is :mod:`dspyq.workers.live_config`.

Secrets and what a process reads only at start (connection URLs, the key prefix,
Celery's limits, telemetry endpoints, allowed imports) are refused: changing them
without a restart would leave workers half on the old value.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError

from dspyq.errors import ConfigurationError
from dspyq.settings import Settings

__all__ = [
    "CONFIG_APPLIED",
    "CONFIG_CHANGED",
    "CONFIG_REJECTED",
    "check_key",
    "effective_items",
    "parse_value",
    "validated_override",
    "with_overrides",
]

CONFIG_CHANGED = "config_changed"
"""Event of a change: data ``key``, ``value`` (None when unset), ``action``, ``version``."""
CONFIG_APPLIED = "config_applied"
"""Event of a worker process applying the overrides of a ``version``."""
CONFIG_REJECTED = "config_rejected"
"""Event of a worker process refusing overrides that do not validate on top of its own settings."""

_RESTART_ONLY = frozenset(
    {
        "broker_url",
        "redis_url",
        "database_url",
        "key_prefix",
        "broker_visibility_timeout",
        "task_time_limit",
        "allowed_imports",
        "api_base",
        "telemetry",
    }
)
"""Keys a process reads once at start (or that decide what code may run)."""

MASK = "**********"


def _is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_secret(arg) for arg in typing.get_args(annotation))
    return False


def check_key(key: str, settings: Settings) -> list[str]:
    """The path of ``key`` if it may change live; ConfigurationError (one line) if not."""
    parts = [part.strip().lower() for part in key.split(".")]
    if not key or not all(parts):
        raise ConfigurationError(
            f"{key!r} is not a settings key; write it dotted, e.g. providers.openai.rate_limit"
        )
    node: Any = settings
    walked: list[str] = []
    for index, part in enumerate(parts):
        walked.append(part)
        where = ".".join(walked)
        if isinstance(node, dict):
            if part not in node:
                raise ConfigurationError(
                    f"unknown key {where!r}: no such entry (known: {', '.join(sorted(node))})"
                )
            node = node[part]
            continue
        if not isinstance(node, BaseModel):
            raise ConfigurationError(f"unknown key {key!r}: {'.'.join(walked[:-1])} has no keys")
        fields = type(node).model_fields
        if part not in fields:
            raise ConfigurationError(
                f"unknown key {where!r}; known here: {', '.join(sorted(fields))}"
            )
        if _is_secret(fields[part].annotation):
            raise ConfigurationError(
                f"{where} is a secret: it is never stored in Redis; set it in the environment "
                f"of the workers and restart them"
            )
        if part in _RESTART_ONLY:
            raise ConfigurationError(
                f"{where} is read when a process starts and cannot change live; set "
                f"DSPYQ_{'__'.join(p.upper() for p in walked)} and restart the workers"
            )
        node = getattr(node, part)
        if index == len(parts) - 1 and isinstance(node, BaseModel | dict):
            raise ConfigurationError(
                f"{where} is a section; set one of its keys, e.g. {where}."
                f"{next(iter(_keys_of(node)), 'key')}"
            )
    return parts


def _keys_of(node: Any) -> list[str]:
    if isinstance(node, BaseModel):
        return list(type(node).model_fields)
    return list(node)


def parse_value(raw: str) -> list[Any]:
    """Readings of a value typed on a command line, most literal first.

    ``"300/m"`` is only a string; ``"30"`` is tried as the string (pydantic turns it
    into a number where one is expected), then as JSON; ``'["a"]'`` and ``null``
    need JSON.
    """
    readings: list[Any] = [raw]
    try:
        decoded = json.loads(raw)
    except ValueError:
        return readings
    if decoded != raw:
        readings.append(decoded)
    return readings


def _set_path(data: dict[str, Any], parts: list[str], value: Any) -> None:
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def with_overrides(base: Settings, overrides: Mapping[str, Any]) -> Settings:
    """``base`` with every override applied, validated as a whole.

    Raises ConfigurationError with a one-line message naming the key at fault.
    """
    data = base.model_dump()
    for key, value in overrides.items():
        _set_path(data, check_key(key, base), value)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise ConfigurationError(
            f"invalid setting: {problems}", context={"keys": sorted(overrides)}
        ) from None


def validated_override(
    base: Settings, overrides: Mapping[str, Any], key: str, raw: str
) -> tuple[str, Any, Settings]:
    """The normalised key, the value to store and the settings that result, or an error.

    Every reading of ``raw`` (:func:`parse_value`) is tried; the first error is reported.
    """
    parts = check_key(key, base)
    normalised = ".".join(parts)
    first_error: ConfigurationError | None = None
    for value in parse_value(raw):
        try:
            result = with_overrides(base, {**overrides, normalised: value})
        except ConfigurationError as exc:
            first_error = first_error or exc
            continue
        # Stored as the validated value ("30" for an int is kept as 30).
        return normalised, _leaf_json(result, parts), result
    assert first_error is not None
    raise first_error


def _leaf_json(settings: Settings, parts: list[str]) -> Any:
    node: Any = settings
    for part in parts:
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return json.loads(json.dumps(node, default=str))


def effective_items(settings: Settings) -> list[tuple[str, Any]]:
    """Every leaf key of ``settings`` and its value as JSON, secrets and URL passwords masked."""
    from dspyq.resilience.redis_client import redacted_url

    items: list[tuple[str, Any]] = []

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, BaseModel):
            fields = type(node).model_fields
            for name in fields:
                value = getattr(node, name)
                if _is_secret(fields[name].annotation):
                    items.append((prefix + name, None if value is None else MASK))
                elif isinstance(value, BaseModel | dict):
                    walk(prefix + name + ".", value)
                else:
                    items.append((prefix + name, _shown(name, value, redacted_url)))
        elif isinstance(node, dict):
            for name in sorted(node):
                walk(prefix + str(name) + ".", node[name])

    walk("", settings)
    return items


def _shown(name: str, value: Any, redacted_url: Any) -> Any:
    if isinstance(value, str) and (name.endswith("url") or "://" in value):
        return redacted_url(value)
    if isinstance(value, SecretStr):
        return MASK
    return json.loads(json.dumps(value, default=str))

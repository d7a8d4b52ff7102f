"""What a deployment checks before it moves anything: the program's LM, its pool, its key.

The LM of a saved version is the one its predictors were saved with (``state.*.lm``),
else the one the deployment names, else ``default_lm``. Its provider is the pool that
must have live workers, and that provider must have credentials here: an API key set
in the settings or the provider's standard environment variable, or an ``api_base`` on
this host (a local server needs none). The check runs where ``deploy`` runs: workers
with their own keys are trusted to hold the same ones.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from dspyq.errors import ConfigurationError
from dspyq.settings import Settings

__all__ = ["check_credentials", "lm_of_spec", "provider_of"]

_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


def lm_of_spec(spec: Mapping[str, Any]) -> str | None:
    """The one model the saved predictors use, or None when they were saved without one.

    ConfigurationError if they use several (a deployment serves one pool)."""
    models = sorted(set(_saved_models(spec.get("state") or {})))
    if len(models) > 1:
        raise ConfigurationError(
            f"the program's predictors use several LMs ({', '.join(models)}); "
            "a deployment serves one pool: save the program with one LM",
            context={"lms": models},
        )
    return models[0] if models else None


def provider_of(model: str, settings: Settings) -> str:
    """The provider (and pool) of ``"provider/model"``; ConfigurationError if it is unknown."""
    prefix, sep, rest = model.partition("/")
    provider = prefix.strip().lower()
    if not sep or not provider or not rest.strip():
        raise ConfigurationError(
            f"model {model!r} must be written 'provider/model' (e.g. 'openai/gpt-4o-mini')",
            context={"model": model},
        )
    settings.provider(provider)  # raises, naming the configured providers
    return provider


def check_credentials(provider: str, settings: Settings) -> str:
    """How ``provider`` authenticates (``"api_key"``, ``"environment"``, ``"local"``);
    ConfigurationError saying what to set when it has no way to."""
    conf = settings.provider(provider)
    if conf.api_key is not None and conf.api_key.get_secret_value():
        return "api_key"
    env_name = _KEY_ENV.get(provider)
    if env_name and os.environ.get(env_name):
        return "environment"
    if conf.api_base and _is_local(conf.api_base):
        return "local"
    raise ConfigurationError(
        f"provider {provider!r} has no credentials: set DSPYQ_PROVIDERS__{provider.upper()}"
        f"__API_KEY" + (f" or {env_name}" if env_name else ""),
        context={"provider": provider},
    )


def _saved_models(state: Any) -> Iterator[str]:
    if isinstance(state, Mapping):
        lm = state.get("lm")
        if isinstance(lm, Mapping) and isinstance(lm.get("model"), str):
            yield lm["model"]
        for key, value in state.items():
            if key != "lm":
                yield from _saved_models(value)
    elif isinstance(state, list):
        for item in state:
            yield from _saved_models(item)


def _is_local(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

"""What every provider is: a small class that turns an :class:`LMRequest` into HTTP calls.

A provider speaks one wire protocol (``kind``); the LM picks the class by the provider
settings' ``kind`` through the registry in :mod:`dspyq.lm.providers`. Providers hold no
per-call state, so one instance serves many threads and tasks at once.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from pydantic import SecretStr

from dspyq.errors import ConfigurationError
from dspyq.lm.request import LMChunk, LMRequest, LMResponse
from dspyq.settings import ProviderSettings

# Conventional variables read when neither the argument nor the settings hold a key.
_STANDARD_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


def _resolve_key(
    given: str | SecretStr | None, configured: SecretStr | None, provider_name: str
) -> SecretStr | None:
    if isinstance(given, SecretStr):
        return given
    if given:
        return SecretStr(given)
    if configured is not None and configured.get_secret_value():
        return configured
    env_name = _STANDARD_KEY_ENV.get(provider_name)
    value = os.environ.get(env_name) if env_name else None
    return SecretStr(value) if value else None


@dataclass(frozen=True)
class ProviderConfig:
    """Where a provider is and how to reach it.

    ``name`` is the model prefix the user wrote (``openai``, ``local``, ``vllm``...),
    ``kind`` the protocol it speaks. The key stays a ``SecretStr`` so that printing a
    config, or an error that holds one, never shows it.
    """

    name: str
    kind: str
    api_base: str
    api_key: SecretStr | None = None
    timeout: float = 30.0
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def for_model(
        cls,
        model: str,
        name: str,
        settings: ProviderSettings,
        *,
        api_base: str | None,
        api_key: str | SecretStr | None,
        timeout: float | None,
    ) -> ProviderConfig:
        """The config of provider ``name`` for ``model``: the arguments given, else the
        provider settings (the key also from the provider's conventional variable)."""
        base = api_base or settings.api_base
        if not base:
            raise ConfigurationError(
                f"no api_base for provider {name!r}: pass api_base= or set "
                f"DSPYQ_PROVIDERS__{name.upper()}__API_BASE",
                context={"provider": name, "model": model},
            )
        return cls(
            name=name,
            kind=settings.kind,
            api_base=base,
            api_key=_resolve_key(api_key, settings.api_key, name),
            timeout=float(timeout if timeout is not None else settings.timeout),
        )

    def key_value(self) -> str | None:
        """The plain key, for building the auth header and nothing else."""
        return self.api_key.get_secret_value() if self.api_key is not None else None


@runtime_checkable
class Provider(Protocol):
    """The interface the LM facade uses. Errors are raised as :mod:`dspyq.errors` types."""

    kind: str
    config: ProviderConfig
    supports_response_schema: bool

    def complete(self, request: LMRequest) -> LMResponse: ...

    async def acomplete(self, request: LMRequest) -> LMResponse: ...

    def stream(self, request: LMRequest) -> Iterator[LMChunk]: ...

    def astream(self, request: LMRequest) -> AsyncIterator[LMChunk]: ...

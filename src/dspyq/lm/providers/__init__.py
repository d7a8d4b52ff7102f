"""Provider registry: protocol kind -> provider class.

A new protocol is one class (usually an :class:`HTTPProvider` subclass) and one line
in ``PROVIDER_KINDS``; plugins may call :func:`register_provider` instead.
"""

from __future__ import annotations

from dspyq.errors import ConfigurationError
from dspyq.lm.providers.anthropic import AnthropicProvider
from dspyq.lm.providers.base import Provider, ProviderConfig
from dspyq.lm.providers.http import HTTPProvider
from dspyq.lm.providers.openai import OpenAIProvider

PROVIDER_KINDS: dict[str, type[HTTPProvider]] = {
    "openai": OpenAIProvider,
    "anthropic": AnthropicProvider,
}


def register_provider(kind: str, cls: type[HTTPProvider]) -> None:
    """Make ``kind`` usable in provider settings (``DSPYQ_PROVIDERS__X__KIND=kind``)."""
    PROVIDER_KINDS[kind] = cls


def provider_class(kind: str) -> type[HTTPProvider]:
    """The class speaking protocol ``kind``; ConfigurationError if there is none."""
    try:
        return PROVIDER_KINDS[kind]
    except KeyError:
        known = ", ".join(sorted(PROVIDER_KINDS))
        raise ConfigurationError(
            f"unknown provider kind {kind!r}; known kinds: {known}", context={"kind": kind}
        ) from None


__all__ = [
    "PROVIDER_KINDS",
    "AnthropicProvider",
    "HTTPProvider",
    "OpenAIProvider",
    "Provider",
    "ProviderConfig",
    "provider_class",
    "register_provider",
]

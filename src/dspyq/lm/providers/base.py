"""What every provider is: a small class that turns an :class:`LMRequest` into HTTP calls.

A provider speaks one wire protocol (``kind``); the LM picks the class by the provider
settings' ``kind`` through the registry in :mod:`dspyq.lm.providers`. Providers hold no
per-call state, so one instance serves many threads and tasks at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from pydantic import SecretStr

from dspyq.lm.request import LMChunk, LMRequest, LMResponse


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

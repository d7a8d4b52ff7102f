"""Embedder: texts to vectors, hosted (an OpenAI-compatible ``/embeddings`` API) or by a callable.

As DSPy 3.4.1's: ``Embedder("openai/text-embedding-3-small")("text")`` is a 1-D
float32 array, a list of texts a 2-D one (a row per text); texts are sent in batches
of ``batch_size``; a callable model gets each batch (and the extra keyword arguments).
DSPy goes through LiteLLM; dspyq posts ``{"model", "input", ...}`` to
``{api_base}/embeddings`` with httpx (``api_base`` defaults to OpenAI's, the key to
``OPENAI_API_KEY``). ``caching`` is accepted for DSPy's call shape; vectors are not cached.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np

from dspyq.errors import ConfigurationError, ProviderError

_DEFAULT_BASE = "https://api.openai.com/v1"


def _hosted(model: str, batch: list[str], **kwargs: Any) -> list[list[float]]:
    provider, _, name = model.partition("/")
    if not name:
        provider, name = "openai", model
    if provider not in ("openai", "local"):
        raise ConfigurationError(
            f"Embedder supports openai/... and local/... models, not {model!r}."
        )
    base = str(kwargs.pop("api_base", None) or os.environ.get("OPENAI_BASE_URL") or _DEFAULT_BASE)
    key = kwargs.pop("api_key", None) or os.environ.get("OPENAI_API_KEY", "")
    timeout = float(kwargs.pop("timeout", 60.0))
    response = httpx.post(
        f"{base.rstrip('/')}/embeddings",
        json={"model": name, "input": batch, **kwargs},
        headers={"Authorization": f"Bearer {key}"} if key else {},
        timeout=timeout,
    )
    if response.status_code != 200:
        raise ProviderError(
            f"Embedding request failed with HTTP {response.status_code}: {response.text[:300]}"
        )
    data = sorted(response.json()["data"], key=lambda item: item["index"])
    return [item["embedding"] for item in data]


class Embedder:
    """``Embedder(model, batch_size=200, caching=True, **kwargs)(texts)`` -> numpy array."""

    def __init__(
        self,
        model: str | Callable[..., Any],
        batch_size: int = 200,
        caching: bool = True,
        **kwargs: Any,
    ) -> None:
        self.model = model
        self.batch_size = batch_size
        self.caching = caching
        self.default_kwargs = kwargs

    def __call__(
        self,
        inputs: str | list[str],
        batch_size: int | None = None,
        caching: bool | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        single = isinstance(inputs, str)
        texts: list[str] = [inputs] if isinstance(inputs, str) else list(inputs)
        if not all(isinstance(text, str) for text in texts):
            raise ValueError("All inputs must be strings.")
        size = batch_size or self.batch_size
        options = {**self.default_kwargs, **kwargs}
        rows: list[Any] = []
        for start in range(0, len(texts), size):
            rows.extend(self._embed(texts[start : start + size], options))
        embeddings = np.array(rows, dtype=np.float32)
        return embeddings[0] if single else embeddings

    async def acall(self, inputs: str | list[str], **kwargs: Any) -> np.ndarray:
        """The same, for async callers (the HTTP call runs in a thread)."""
        import asyncio

        return await asyncio.to_thread(self.__call__, inputs, **kwargs)

    def _embed(self, batch: list[str], options: dict[str, Any]) -> Any:
        if isinstance(self.model, str):
            return _hosted(self.model, batch, **dict(options))
        if callable(self.model):
            return self.model(batch, **options)
        raise ValueError(
            f"`model` in `dspy.Embedder` must be a string or a callable, but got {type(self.model)}."
        )

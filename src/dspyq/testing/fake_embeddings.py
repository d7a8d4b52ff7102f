"""The fake server's OpenAI ``/v1/embeddings``: deterministic vectors, so tests can compare them.

Each text's vector is derived from its SHA-256 (``dimensions`` floats in [-1, 1],
default 8), so the same text always embeds the same on any run or machine. The
response has the shape the OpenAI SDK (and LiteLLM) parse.
"""

from __future__ import annotations

import hashlib
from typing import Any

DEFAULT_DIMENSIONS = 8


def fake_vector(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """A fixed vector for ``text``: bytes of its hash mapped to [-1, 1], rounded to 4 places."""
    digest = b""
    counter = 0
    while len(digest) < dimensions:
        digest += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    return [round(byte / 127.5 - 1.0, 4) for byte in digest[:dimensions]]


def embeddings_response(body: Any) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) for an embeddings request."""
    if not isinstance(body, dict) or "input" not in body:
        error = {"message": "'input' is required", "type": "invalid_request_error"}
        return 400, {"error": error}
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    dimensions = int(body.get("dimensions") or DEFAULT_DIMENSIONS)
    data = [
        {"object": "embedding", "index": index, "embedding": fake_vector(str(text), dimensions)}
        for index, text in enumerate(inputs)
    ]
    tokens = sum(len(str(text).split()) for text in inputs)
    return 200, {
        "object": "list",
        "data": data,
        "model": body.get("model", "fake-embedding"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }

"""ColBERTv2: a client of a ColBERTv2 search server, with DSPy 3.4.1's requests and results.

``ColBERTv2(url, port)(query, k=10)`` sends ``GET url?query=...&k=...`` (or a JSON
``POST`` with ``post_requests=True``) and returns the server's ``topk`` passages as
attribute dicts (``simplify=True``: their text only). GET results gain ``long_text``
(a copy of ``text``); POST results are returned as the server wrote them, as in DSPy.
Differences: httpx instead of requests (an HTTP error status raises
``httpx.HTTPStatusError``), and no response cache.
"""

from __future__ import annotations

from typing import Any

import httpx


class dotdict(dict[str, Any]):
    """A dict whose keys read as attributes (``passage.long_text``)."""

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__") and key.endswith("__"):
            raise AttributeError(key)
        try:
            return self[key]
        except KeyError:
            raise AttributeError(
                f"'{type(self).__name__}' object has no attribute '{key}'"
            ) from None


def _topk(response: httpx.Response, k: int) -> list[dict[str, Any]]:
    response.raise_for_status()
    body = response.json()
    if body.get("error"):
        raise ValueError(
            f"ColBERTv2 server returned an error: {body.get('message', 'Unknown error')}"
        )
    if "topk" not in body:
        raise ValueError(f"ColBERTv2 server returned an unexpected response: {body}")
    return list(body["topk"][:k])


class ColBERTv2:
    """Wrapper for a ColBERTv2 retrieval server."""

    def __init__(
        self,
        url: str = "http://0.0.0.0",
        port: str | int | None = None,
        post_requests: bool = False,
    ) -> None:
        self.post_requests = post_requests
        self.url = f"{url}:{port}" if port else url

    def __call__(self, query: str, k: int = 10, simplify: bool = False) -> list[Any]:
        payload: dict[str, str | int] = {"query": query, "k": k}
        if self.post_requests:
            headers = {"Content-Type": "application/json; charset=utf-8"}
            topk = _topk(httpx.post(self.url, json=payload, headers=headers, timeout=10), k)
        else:
            if k > 100:  # DSPy asserts
                raise AssertionError(
                    "Only k <= 100 is supported for the hosted ColBERTv2 server at the moment."
                )
            topk = _topk(httpx.get(self.url, params=payload, timeout=10), k)
            topk = [{**passage, "long_text": passage["text"]} for passage in topk]
        if simplify:
            return [passage["long_text"] for passage in topk]
        return [dotdict(passage) for passage in topk]

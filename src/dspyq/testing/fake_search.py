"""A fake ColBERTv2 search server: ``GET ?query=&k=`` or a JSON ``POST``, answering ``topk``.

It serves a fixed passage list (the ``k`` first, in order, unless ``rank`` reorders
them for the query), and an error body for the query ``"fail"``; ``seen`` records
``(method, query, k)`` per request. Runs on a thread, on a free local port, so other
processes (workers) can reach it too.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlparse

__all__ = ["FakeSearchServer"]

Passage = dict[str, Any]


class FakeSearchServer:
    """``with FakeSearchServer(passages) as search: ColBERTv2(search.url)(...)``."""

    def __init__(
        self,
        passages: list[Passage],
        rank: Callable[[str, list[Passage]], list[Passage]] | None = None,
    ) -> None:
        self.passages = passages
        self.rank = rank
        self.seen: list[tuple[str, str, int]] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> FakeSearchServer:
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeSearchServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def answer(self, method: str, query: str, k: int) -> dict[str, Any]:
        self.seen.append((method, query, k))
        if query == "fail":
            return {"error": True, "message": "bad query"}
        ranked = self.passages if self.rank is None else self.rank(query, list(self.passages))
        return {"topk": ranked[:k]}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Search(BaseHTTPRequestHandler):
            def _reply(self, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                params = parse_qs(urlparse(self.path).query)
                self._reply(server.answer("GET", params["query"][0], int(params["k"][0])))

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                self._reply(server.answer("POST", body["query"], int(body["k"])))

            def log_message(self, *args: Any) -> None:
                pass  # quiet test output

        return Search

"""ColBERTv2 against DSPy 3.4.1, both talking to a small local search server of ours."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import dspy
import pytest

import dspyq

PASSAGES = [{"text": f"passage {i}", "pid": i, "score": 10.0 - i} for i in range(5)]


class _Search(BaseHTTPRequestHandler):
    seen: list[Any] = []

    def _reply(self, query: str, k: int) -> None:
        body = {"error": True, "message": "bad query"} if query == "fail" else {"topk": PASSAGES}
        self.seen.append((self.command, query, k))
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        params = parse_qs(urlparse(self.path).query)
        self._reply(params["query"][0], int(params["k"][0]))

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._reply(body["query"], int(body["k"]))

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Search)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    _Search.seen = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_colbertv2_returns_what_dspy_returns(server: str):
    url, port = server.rsplit(":", 1)
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    for post in (False, True):
        ours = dspyq.ColBERTv2(url, port, post_requests=post)("a query", k=3)
        theirs = dspy.ColBERTv2(url, port, post_requests=post)("a query", k=3)
        assert [dict(p) for p in ours] == [dict(p) for p in theirs]
        assert ours[0].text == theirs[0].text == "passage 0"
    simple = dspyq.ColBERTv2(url, port)("q2", k=2, simplify=True)
    assert (
        simple == dspy.ColBERTv2(url, port)("q2", k=2, simplify=True) == ["passage 0", "passage 1"]
    )
    assert ("GET", "a query", 3) in _Search.seen and ("POST", "a query", 3) in _Search.seen
    for client in (dspyq.ColBERTv2(url, port), dspy.ColBERTv2(url, port)):
        with pytest.raises(ValueError, match="bad query"):
            client("fail", k=1)

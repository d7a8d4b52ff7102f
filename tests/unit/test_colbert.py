"""ColBERTv2 against DSPy 3.4.1, both talking to a small local search server of ours."""

from __future__ import annotations

from collections.abc import Iterator

import dspy
import pytest

import dspyq
from dspyq.testing.fake_search import FakeSearchServer

PASSAGES = [{"text": f"passage {i}", "pid": i, "score": 10.0 - i} for i in range(5)]


@pytest.fixture
def server() -> Iterator[FakeSearchServer]:
    with FakeSearchServer(PASSAGES) as search:
        yield search


@pytest.fixture
def dspy_uncached() -> Iterator[None]:
    """DSPy's cache off for one test, and DSPy's own cache back after it: the setting
    is process-wide, and later tests rely on DSPy caching."""
    saved = dspy.cache
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    try:
        yield
    finally:
        dspy.cache = saved


def test_colbertv2_returns_what_dspy_returns(server: FakeSearchServer, dspy_uncached: None):
    url, port = server.url.rsplit(":", 1)
    for post in (False, True):
        ours = dspyq.ColBERTv2(url, port, post_requests=post)("a query", k=3)
        theirs = dspy.ColBERTv2(url, port, post_requests=post)("a query", k=3)
        assert [dict(p) for p in ours] == [dict(p) for p in theirs]
        assert ours[0].text == theirs[0].text == "passage 0"
    simple = dspyq.ColBERTv2(url, port)("q2", k=2, simplify=True)
    assert (
        simple == dspy.ColBERTv2(url, port)("q2", k=2, simplify=True) == ["passage 0", "passage 1"]
    )
    assert ("GET", "a query", 3) in server.seen and ("POST", "a query", 3) in server.seen
    for client in (dspyq.ColBERTv2(url, port), dspy.ColBERTv2(url, port)):
        with pytest.raises(ValueError, match="bad query"):
            client("fail", k=1)

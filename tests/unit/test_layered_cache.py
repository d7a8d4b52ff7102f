"""LayeredCache: read-through across layers, writes to all, failing layers skipped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dspyq.errors import RedisUnavailableError
from dspyq.lm import LM, LRUCache
from dspyq.lm.cache import Cache, clear_cache, set_default_cache
from dspyq.lm.cache_peek import CachePeek
from dspyq.lm.layered_cache import LayeredCache
from dspyq.lm.request import LMResponse, Usage
from dspyq.testing import FakeLMServer

ANSWER = LMResponse(outputs=["42"], usage=Usage.of(3, 1), model="m")


class BrokenLayer:
    """A layer whose backend is down: every operation raises as our Redis layer would."""

    def __init__(self) -> None:
        self.calls = 0

    def get(self, key: str) -> LMResponse | None:
        self.calls += 1
        raise RedisUnavailableError("Redis is unreachable")

    def put(self, key: str, value: LMResponse) -> None:
        self.calls += 1
        raise RedisUnavailableError("Redis is unreachable")


def test_layered_cache_satisfies_the_cache_protocol() -> None:
    assert isinstance(LayeredCache([LRUCache()]), Cache)


def test_an_empty_list_of_layers_is_refused() -> None:
    with pytest.raises(ValueError):
        LayeredCache([])


def test_a_miss_in_every_layer_is_a_miss() -> None:
    cache = LayeredCache([LRUCache(), LRUCache()])
    assert cache.get("k") is None
    assert cache.misses == 1
    assert cache.hits == [0, 0]


def test_a_hit_in_a_lower_layer_fills_the_layers_above_it_only() -> None:
    l1, l2, l3 = LRUCache(), LRUCache(), LRUCache()
    cache = LayeredCache([l1, l2, l3])
    l3.put("k", ANSWER)

    assert cache.get("k") == ANSWER
    assert "k" in l1 and "k" in l2
    assert cache.hits == [0, 0, 1]

    assert cache.get("k") == ANSWER
    assert cache.hits == [1, 0, 1]


def test_a_middle_hit_does_not_write_below_it() -> None:
    l1, l2, l3 = LRUCache(), LRUCache(), LRUCache()
    cache = LayeredCache([l1, l2, l3])
    l2.put("k", ANSWER)
    assert cache.get("k") == ANSWER
    assert "k" in l1
    assert "k" not in l3


def test_writes_go_to_every_layer() -> None:
    layers = [LRUCache(), LRUCache(), LRUCache()]
    LayeredCache(layers).put("k", ANSWER)
    assert all(layer.get("k") == ANSWER for layer in layers)


def test_a_failing_layer_is_a_miss_on_read_and_skipped_on_write() -> None:
    l1, broken, l3 = LRUCache(), BrokenLayer(), LRUCache()
    cache = LayeredCache([l1, broken, l3])
    cache.put("k", ANSWER)
    assert l3.get("k") == ANSWER
    l1.clear()

    assert cache.get("k") == ANSWER  # served by l3 past the broken layer
    assert "k" in l1
    assert broken.calls == 3  # put, get, refill on the way up
    assert cache.hits == [0, 0, 1]


def test_clear_empties_every_layer_that_can_be_emptied() -> None:
    l1, l2 = LRUCache(), LRUCache()
    cache = LayeredCache([l1, BrokenLayer(), l2])
    cache.put("k", ANSWER)
    cache.get("k")
    cache.clear()
    assert len(l1) == 0 and len(l2) == 0
    assert cache.hits == [0, 0, 0]


@pytest.fixture
def layers() -> Iterator[tuple[LRUCache, LRUCache]]:
    l1, l2 = LRUCache(), LRUCache()
    set_default_cache(LayeredCache([l1, l2]))
    yield l1, l2
    set_default_cache(None)


def test_the_lm_reads_through_the_layers(
    fake_lm: FakeLMServer, layers: tuple[LRUCache, LRUCache]
) -> None:
    l1, l2 = layers
    lm = LM("openai/gpt-4o-mini", api_base=fake_lm.openai_base, api_key="sk-x")
    assert lm("layered") == ["fake answer: layered"]
    assert len(l1) == 1 and len(l2) == 1

    l1.clear()  # a new process: its L1 is empty, the shared layer still holds the answer
    assert lm("layered") == ["fake answer: layered"]
    assert len(fake_lm.requests) == 1
    assert lm.history[-1]["cache_hit"] is True
    assert len(l1) == 1


def test_clear_cache_reaches_every_layer(
    fake_lm: FakeLMServer, layers: tuple[LRUCache, LRUCache]
) -> None:
    lm = LM("openai/gpt-4o-mini", api_base=fake_lm.openai_base, api_key="sk-x")
    lm("forget me")
    clear_cache()
    assert all(len(layer) == 0 for layer in layers)


# --- a layer's read handed to the provider gate (get_or_peek) ------------------------------


class PeekableLayer(LRUCache):
    """A shared layer that can hand its read over, as the Redis layer does."""

    def peek(self, key: str) -> CachePeek:
        return CachePeek(redis=self, key=key, read=lambda raw: LMResponse.model_validate_json(raw))


class SkippingLayer(LRUCache):
    """A lower layer that says whether its reads would miss, as the SQL layer does."""

    def __init__(self, skips: bool) -> None:
        super().__init__()
        self.skips = skips

    def skips_reads(self) -> bool:
        return self.skips


def test_a_shared_layer_hands_its_read_over_when_the_layers_below_would_skip() -> None:
    l1, l2 = LRUCache(), PeekableLayer()
    cache = LayeredCache([l1, l2, SkippingLayer(skips=True)])
    value, peek = cache.get_or_peek("k", lambda _peek: True)
    assert value is None and peek is not None and peek.key == "k"
    assert cache.misses == 1
    assert peek.found(ANSWER.model_dump_json())  # what the gate does with the entry
    assert peek.hit == ANSWER
    assert "k" in l1  # copied up, as any hit
    assert cache.hits == [0, 1, 0] and cache.misses == 0


def test_the_read_is_made_here_when_a_layer_below_would_read_or_the_gate_cannot() -> None:
    l2 = PeekableLayer()
    l2.put("k", ANSWER)
    for lower, can_peek in ((SkippingLayer(skips=False), True), (SkippingLayer(True), False)):
        cache = LayeredCache([LRUCache(), l2, lower])
        assert cache.get_or_peek("k", lambda _peek, ok=can_peek: ok) == (ANSWER, None)
        assert cache.hits == [0, 1, 0]


def test_an_answer_above_the_shared_layer_needs_no_read() -> None:
    l1 = LRUCache()
    l1.put("k", ANSWER)
    cache = LayeredCache([l1, PeekableLayer(), SkippingLayer(skips=True)])
    assert cache.get_or_peek("k", lambda _peek: True) == (ANSWER, None)
    assert cache.hits == [1, 0, 0]

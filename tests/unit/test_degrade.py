"""A stale cached answer as the last resort when the provider is unavailable."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from dspyq.core import observe
from dspyq.core.context import context
from dspyq.errors import BadRequestError, ProviderUnavailableError
from dspyq.lm import LM, LRUCache
from dspyq.lm.cache import default_cache, set_default_cache
from dspyq.lm.layered_cache import LayeredCache
from dspyq.settings import reload_settings
from dspyq.testing import FakeLMServer

TTL = 0.2


@pytest.fixture
def short_cache() -> Iterator[LRUCache]:
    previous = default_cache()
    cache = LRUCache(ttl=TTL)
    set_default_cache(cache)
    yield cache
    set_default_cache(previous)


@pytest.fixture
def degradation(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DSPYQ_DEGRADATION__STALE_CACHE", "true")
    reload_settings()
    yield
    monkeypatch.undo()
    reload_settings()


def _lm(server: FakeLMServer) -> LM:
    return LM("openai/gpt-4o-mini", api_base=server.openai_base, api_key="k", num_retries=0)


def _cached_then_expired(lm: LM) -> None:
    assert lm("What is the capital of France?") == ["fake answer: What is the capital of France?"]
    time.sleep(TTL * 1.5)


@pytest.mark.usefixtures("short_cache", "degradation")
def test_an_unavailable_provider_is_answered_from_the_expired_entry(
    fake_lm: FakeLMServer,
) -> None:
    lm = _lm(fake_lm)
    _cached_then_expired(lm)
    fake_lm.fail_next(5, 503)
    with observe.capture() as events:
        answer = lm("What is the capital of France?")

    assert answer == ["fake answer: What is the capital of France?"]
    assert lm.history[-1]["stale"] is True and lm.history[-1]["cache_hit"] is True
    [degraded] = [e for e in events if e.event_type == "degraded_response"]
    assert degraded.data["reason"] == "ProviderUnavailableError"
    assert degraded.data["provider"] == "openai"


@pytest.mark.usefixtures("short_cache")
def test_without_the_setting_the_failure_stands(fake_lm: FakeLMServer) -> None:
    lm = _lm(fake_lm)
    _cached_then_expired(lm)
    fake_lm.fail_next(5, 503)
    with pytest.raises(ProviderUnavailableError):
        lm("What is the capital of France?")


@pytest.mark.usefixtures("short_cache", "degradation")
def test_only_unavailability_degrades_and_not_while_fallbacks_remain(
    fake_lm: FakeLMServer,
) -> None:
    lm = _lm(fake_lm)
    _cached_then_expired(lm)
    fake_lm.fail_next(1, 400)  # the caller's fault: a stale answer would hide it
    with pytest.raises(BadRequestError):
        lm("What is the capital of France?")
    fake_lm.fail_next(5, 503)
    with context(allow_stale=False), pytest.raises(ProviderUnavailableError):
        lm("What is the capital of France?")
    with pytest.raises(ProviderUnavailableError):
        lm("A question never asked before")


def test_stale_reads_honour_the_grace_and_are_not_copied_upwards() -> None:
    from dspyq.lm.request import LMResponse

    upper, lower = LRUCache(ttl=60), LRUCache(ttl=TTL)
    layered = LayeredCache([upper, lower])
    lower.put("k", LMResponse(outputs=["old"]))
    time.sleep(TTL * 1.5)
    assert layered.get("k") is None
    assert layered.get_stale("k", None) == LMResponse(outputs=["old"])
    assert layered.get_stale("k", 10.0) == LMResponse(outputs=["old"])
    assert layered.get_stale("k", 0.0) is None  # expired longer ago than the grace
    assert "k" not in upper

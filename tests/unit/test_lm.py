"""The LM facade against the fake server: calls, options, usage and cost, cache, history, state."""

from __future__ import annotations

import asyncio
import copy
import json

import httpx
import pytest
from pydantic import BaseModel

from dspyq.errors import ConfigurationError, InputError
from dspyq.lm import LM, LRUCache, Price, clear_history, global_history, inspect_history
from dspyq.lm.cache import cache_key, default_cache, set_default_cache
from dspyq.settings import reload_settings
from dspyq.testing import FakeLMServer

KEY = "sk-test-very-secret-1234"


def openai_lm(server: FakeLMServer, **kwargs: object) -> LM:
    options: dict[str, object] = {"api_base": server.openai_base, "api_key": KEY, "cache": False}
    options.update(kwargs)
    return LM("openai/gpt-4o-mini", **options)  # type: ignore[arg-type]


# --- choosing a provider -------------------------------------------------------------------


@pytest.mark.parametrize("model", ["gpt-4o-mini", "", "openai/", "/gpt-4o"])
def test_malformed_model_string_is_a_configuration_error(model: str) -> None:
    with pytest.raises(ConfigurationError, match="provider/model"):
        LM(model)


def test_unknown_provider_prefix_names_the_configured_ones() -> None:
    with pytest.raises(ConfigurationError) as info:
        LM("nosuchprovider/some-model")
    assert "nosuchprovider" in str(info.value)
    assert "openai" in str(info.value)


def test_local_prefix_speaks_openai_protocol_to_the_given_base(fake_lm: FakeLMServer) -> None:
    lm = LM("local/llama-3-8b", api_base=fake_lm.openai_base, cache=False)
    assert lm(messages=[{"role": "user", "content": "hi"}]) == ["fake answer: hi"]
    request = fake_lm.requests[-1]
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["model"] == "llama-3-8b"
    assert request["had_key"] is False


def test_local_default_api_base_comes_from_settings() -> None:
    lm = LM("local/llama3")
    assert lm.provider.config.api_base == "http://127.0.0.1:8000/v1"
    assert lm.provider.kind == "openai"


@pytest.fixture
def custom_provider_settings(monkeypatch: pytest.MonkeyPatch, fake_lm: FakeLMServer):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DSPYQ_PROVIDERS__MYVLLM__API_BASE", fake_lm.openai_base)
    monkeypatch.setenv("DSPYQ_PROVIDERS__MYVLLM__API_KEY", "vllm-key-xyz")
    monkeypatch.setenv("DSPYQ_PROVIDERS__MYCLAUDE__API_BASE", fake_lm.anthropic_base)
    monkeypatch.setenv("DSPYQ_PROVIDERS__MYCLAUDE__KIND", "anthropic")
    reload_settings()
    yield
    monkeypatch.undo()
    reload_settings()


@pytest.mark.usefixtures("custom_provider_settings")
def test_other_prefixes_use_the_provider_settings_and_their_kind(fake_lm: FakeLMServer) -> None:
    vllm = LM("myvllm/qwen", cache=False)
    assert vllm("hello") == ["fake answer: hello"]
    assert fake_lm.requests[-1]["path"] == "/v1/chat/completions"
    assert fake_lm.requests[-1]["had_key"] is True

    claude = LM("myclaude/claude-x", cache=False)
    assert claude("hello") == ["fake answer: hello"]
    assert fake_lm.requests[-1]["path"] == "/v1/messages"
    assert claude.supports_response_schema is False
    assert vllm.supports_response_schema is True


def test_unknown_provider_kind_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSPYQ_PROVIDERS__ODD__KIND", "carrier-pigeon")
    monkeypatch.setenv("DSPYQ_PROVIDERS__ODD__API_BASE", "http://127.0.0.1:9")
    reload_settings()
    try:
        with pytest.raises(ConfigurationError, match="carrier-pigeon"):
            LM("odd/model")
    finally:
        monkeypatch.undo()
        reload_settings()


# --- calling ---------------------------------------------------------------------------------


def test_prompt_and_messages_forms_both_work(fake_lm: FakeLMServer) -> None:
    lm = openai_lm(fake_lm)
    assert lm("What is up?") == ["fake answer: What is up?"]
    assert lm(messages=[{"role": "user", "content": "Hi"}]) == ["fake answer: Hi"]
    assert fake_lm.requests[0]["body"]["messages"] == [{"role": "user", "content": "What is up?"}]


def test_call_needs_prompt_or_messages(fake_lm: FakeLMServer) -> None:
    lm = openai_lm(fake_lm)
    with pytest.raises(InputError):
        lm()
    with pytest.raises(InputError):
        lm("a", messages=[{"role": "user", "content": "b"}])


def test_default_and_call_options_are_sent_and_call_wins(fake_lm: FakeLMServer) -> None:
    lm = openai_lm(fake_lm, temperature=0.2, max_tokens=50, top_p=0.9)
    lm("hello", temperature=0.7)
    body = fake_lm.requests[-1]["body"]
    assert body["temperature"] == 0.7
    assert body["max_tokens"] == 50
    assert body["top_p"] == 0.9
    assert "cache" not in body and "timeout" not in body


def test_none_options_are_not_sent(fake_lm: FakeLMServer) -> None:
    openai_lm(fake_lm)("hello")
    body = fake_lm.requests[-1]["body"]
    assert "temperature" not in body and "max_tokens" not in body


def test_n_returns_one_output_per_choice_in_order(fake_lm: FakeLMServer) -> None:
    fake_lm.add_rule(answers=["first", "second", "third"])
    outputs = openai_lm(fake_lm)("pick", n=3)
    assert outputs == ["first", "second", "third"]
    assert len(fake_lm.requests) == 1
    assert fake_lm.requests[0]["body"]["n"] == 3


def test_acall_returns_the_same_as_call(fake_lm: FakeLMServer) -> None:
    lm = openai_lm(fake_lm)
    assert asyncio.run(lm.acall("async question")) == ["fake answer: async question"]


def test_acall_uses_a_given_async_client(fake_lm: FakeLMServer) -> None:
    async def run() -> list[str]:
        async with httpx.AsyncClient(headers={"x-trace": "abc"}) as client:
            lm = openai_lm(fake_lm, async_http_client=client)
            return await lm.acall("hi", n=2)

    assert asyncio.run(run()) == ["fake answer: hi", "fake answer: hi"]
    assert fake_lm.requests[-1]["headers"]["x-trace"] == "abc"


def test_sync_call_uses_a_given_client(fake_lm: FakeLMServer) -> None:
    with httpx.Client(headers={"x-trace": "sync"}) as client:
        openai_lm(fake_lm, http_client=client)("hi")
    assert fake_lm.requests[-1]["headers"]["x-trace"] == "sync"


# --- response formats ------------------------------------------------------------------------


def test_json_object_response_format_is_passed_through(fake_lm: FakeLMServer) -> None:
    openai_lm(fake_lm)("give json", response_format={"type": "json_object"})
    assert fake_lm.requests[-1]["body"]["response_format"] == {"type": "json_object"}


class Answer(BaseModel):
    answer: str
    confidence: float = 0.5


class Outer(BaseModel):
    inner: Answer


def test_pydantic_response_format_becomes_a_strict_json_schema(fake_lm: FakeLMServer) -> None:
    lm = openai_lm(fake_lm)
    assert lm.supports_response_schema is True
    lm("give json", response_format=Outer)
    sent = fake_lm.requests[-1]["body"]["response_format"]
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["name"] == "Outer"
    assert sent["json_schema"]["strict"] is True
    schema = sent["json_schema"]["schema"]
    assert schema["additionalProperties"] is False
    inner = schema["$defs"]["Answer"]
    assert inner["additionalProperties"] is False
    assert inner["required"] == ["answer", "confidence"]
    # The history keeps the JSON form, so entries stay serialisable.
    json.dumps(lm.history[-1])


def test_bad_response_format_is_rejected(fake_lm: FakeLMServer) -> None:
    with pytest.raises(ConfigurationError, match="response_format"):
        openai_lm(fake_lm)("x", response_format="json")


# --- usage, cost, history --------------------------------------------------------------------


def test_history_records_usage_cost_and_duration(fake_lm: FakeLMServer) -> None:
    fake_lm.answer("Paris is the capital.")
    lm = openai_lm(fake_lm)
    lm(messages=[{"role": "user", "content": "Capital of France?"}], temperature=0.1)
    entry = lm.history[-1]
    prompt_tokens = fake_lm.requests[-1]  # the fake counts ~4 chars per token
    assert prompt_tokens["status"] == 200
    assert entry["usage"] == {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}
    assert entry["cost"] == pytest.approx((5 * 0.15 + 6 * 0.60) / 1_000_000)
    assert entry["cost_known"] is True
    assert entry["outputs"] == ["Paris is the capital."]
    assert entry["messages"] == [{"role": "user", "content": "Capital of France?"}]
    assert entry["kwargs"] == {"temperature": 0.1}
    assert entry["model"] == "openai/gpt-4o-mini"
    assert entry["cache_hit"] is False
    assert entry["duration_ms"] > 0
    assert global_history()[-1] is entry


def test_unknown_model_costs_nothing_and_says_so(fake_lm: FakeLMServer) -> None:
    lm = LM("local/my-own-model", api_base=fake_lm.openai_base, cache=False)
    lm("hi")
    assert lm.history[-1]["cost"] == 0.0
    assert lm.history[-1]["cost_known"] is False


def test_prices_can_be_overridden_per_lm(fake_lm: FakeLMServer) -> None:
    fake_lm.answer("abcdefgh")  # 2 completion tokens
    lm = LM("local/my-own-model", api_base=fake_lm.openai_base, cache=False, prices=(1.0, 2.0))
    lm("abcd")  # 1 prompt token
    assert lm.history[-1]["cost"] == pytest.approx((1 * 1.0 + 2 * 2.0) / 1_000_000)
    by_model = openai_lm(fake_lm, prices={"gpt-4o-mini": Price(1000.0, 1000.0)})
    by_model("abcd")
    assert by_model.history[-1]["cost"] == pytest.approx(3 * 1000.0 / 1_000_000)


def test_history_and_inspect_history_print_messages_and_response(
    fake_lm: FakeLMServer, capsys: pytest.CaptureFixture[str]
) -> None:
    clear_history()
    fake_lm.answer("[[ ## answer ## ]]\n42\n\n[[ ## completed ## ]]")
    lm = openai_lm(fake_lm)
    lm(messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "6*7?"}])
    inspect_history(1)
    out = capsys.readouterr().out
    assert "System message:" in out and "Be brief." in out
    assert "User message:" in out and "6*7?" in out
    assert "Response:" in out and "[[ ## answer ## ]]" in out and "42" in out
    lm.inspect_history(1)
    assert "6*7?" in capsys.readouterr().out


# --- the API key -----------------------------------------------------------------------------


def test_api_key_is_sent_but_never_recorded(fake_lm: FakeLMServer) -> None:
    fake_lm.configure(api_key=KEY)  # the fake now refuses requests without this key
    lm = openai_lm(fake_lm)
    assert lm("hi") == ["fake answer: hi"]
    logged = fake_lm.requests[-1]
    assert logged["had_key"] is True
    assert logged["headers"]["authorization"] == "REDACTED"
    assert KEY not in json.dumps(fake_lm.requests)
    assert KEY not in json.dumps(lm.history)
    assert KEY not in json.dumps(lm.dump_state())
    assert KEY not in repr(lm) and KEY not in repr(lm.provider.config)


def test_api_key_falls_back_to_settings(
    monkeypatch: pytest.MonkeyPatch, fake_lm: FakeLMServer
) -> None:
    monkeypatch.setenv("DSPYQ_PROVIDERS__OPENAI__API_KEY", KEY)
    reload_settings()
    try:
        fake_lm.configure(api_key=KEY)
        lm = LM("openai/gpt-4o-mini", api_base=fake_lm.openai_base, cache=False)
        assert lm("hi") == ["fake answer: hi"]
    finally:
        monkeypatch.undo()
        reload_settings()


def test_api_key_cannot_be_given_per_call(fake_lm: FakeLMServer) -> None:
    with pytest.raises(ConfigurationError):
        openai_lm(fake_lm)("hi", api_key="other")


# --- cache -------------------------------------------------------------------------------------


def test_cache_hit_returns_same_outputs_without_a_request(fake_lm: FakeLMServer) -> None:
    fake_lm.add_rule(answers=["one", "two"])
    lm = openai_lm(fake_lm, cache=True)
    first = lm("same question")
    second = lm("same question")
    assert first == second == ["one"]
    assert len(fake_lm.requests) == 1
    hit = lm.history[-1]
    assert hit["cache_hit"] is True and hit["cost"] == 0.0
    assert hit["usage"]["total_tokens"] == 0


def test_cache_key_depends_on_semantic_options_only(fake_lm: FakeLMServer) -> None:
    lm = openai_lm(fake_lm, cache=True)
    lm("q", temperature=0.1)
    lm("q", temperature=0.1, timeout=5, num_retries=1)  # non-semantic: still a hit
    lm("q", temperature=0.2)  # semantic: a miss
    lm("q", temperature=0.1, rollout_id=7)  # a new rollout: a miss
    assert len(fake_lm.requests) == 3
    assert "rollout_id" not in fake_lm.requests[-1]["body"]


def test_cache_can_be_turned_off_per_lm_and_per_call(fake_lm: FakeLMServer) -> None:
    cached = openai_lm(fake_lm, cache=True)
    cached("q")
    cached("q", cache=False)
    assert len(fake_lm.requests) == 2
    uncached = openai_lm(fake_lm, cache=False)
    uncached("z")
    uncached("z")
    assert len(fake_lm.requests) == 4


def test_acall_and_stream_share_the_cache(fake_lm: FakeLMServer) -> None:
    lm = openai_lm(fake_lm, cache=True)
    first = lm("shared")
    assert asyncio.run(lm.acall("shared")) == first
    assert "".join(lm.stream("shared")) == first[0]
    assert len(fake_lm.requests) == 1


def test_lru_cache_evicts_least_recently_used() -> None:
    from dspyq.lm.request import LMResponse

    cache = LRUCache(max_entries=2)
    a, b, c = (LMResponse(outputs=[x]) for x in "abc")
    cache.put("a", a)
    cache.put("b", b)
    assert cache.get("a") is a  # a is now the most recent
    cache.put("c", c)
    assert cache.get("b") is None
    assert cache.get("a") is a and cache.get("c") is c


def test_cache_key_is_stable_across_dict_order() -> None:
    one = cache_key({"model": "m", "options": {"a": 1, "b": 2}})
    two = cache_key({"options": {"b": 2, "a": 1}, "model": "m"})
    assert one == two and len(one) == 64


def test_default_cache_can_be_replaced(fake_lm: FakeLMServer) -> None:
    mine = LRUCache(max_entries=10)
    set_default_cache(mine)
    try:
        openai_lm(fake_lm, cache=True)("fill me")
        assert len(mine) == 1
        assert default_cache() is mine
    finally:
        set_default_cache(None)


# --- copies and state ----------------------------------------------------------------------------


def test_dump_state_has_dspy_saved_form_and_no_key(fake_lm: FakeLMServer) -> None:
    lm = openai_lm(fake_lm, temperature=0.0, max_tokens=256, num_retries=3)
    state = lm.dump_state()
    assert state == {
        "_dspy_lm_class": "dspy.clients.lm.LM",
        "model": "openai/gpt-4o-mini",
        "model_type": "chat",
        "cache": False,
        "num_retries": 3,
        "temperature": 0.0,
        "max_tokens": 256,
        "engine": "litellm",
        "finetuning_model": None,
        "launch_kwargs": {},
        "train_kwargs": {},
    }
    assert "api_key" not in state and "api_base" not in state


def test_from_state_reads_dspy_saved_lm_and_drops_endpoints() -> None:
    saved = {
        "_dspy_lm_class": "dspy.clients.lm.LM",
        "model": "openai/gpt-4o-mini",
        "model_type": "chat",
        "cache": False,
        "num_retries": 3,
        "temperature": 0.0,
        "max_tokens": 256,
        "engine": "litellm",
        "finetuning_model": None,
        "launch_kwargs": {},
        "train_kwargs": {},
        "api_base": "http://evil.example/v1",
    }
    lm = LM.from_state(saved)
    assert lm.model == "openai/gpt-4o-mini"
    assert lm.kwargs == {"temperature": 0.0, "max_tokens": 256}
    assert lm.cache is False
    assert lm.provider.config.api_base == "https://api.openai.com/v1"
    assert LM.from_state(lm.dump_state()).dump_state() == lm.dump_state()


def test_copy_changes_options_and_starts_a_new_history(fake_lm: FakeLMServer) -> None:
    lm = openai_lm(fake_lm, temperature=0.0, stop=["\n"])
    lm("hi")
    warm = lm.copy(temperature=1.0, rollout_id=3, stop=None)
    assert warm.kwargs == {"temperature": 1.0, "max_tokens": None, "rollout_id": 3}
    assert warm.history == [] and len(lm.history) == 1
    assert lm.kwargs["temperature"] == 0.0
    other = lm.copy(model="openai/gpt-4o")
    other("hi")
    assert fake_lm.requests[-1]["body"]["model"] == "gpt-4o"
    assert fake_lm.requests[-1]["had_key"] is True


def test_deepcopy_keeps_working_and_shares_the_connection(fake_lm: FakeLMServer) -> None:
    lm = openai_lm(fake_lm, temperature=0.0)
    lm("one")
    clone = copy.deepcopy(lm)
    clone.kwargs["temperature"] = 0.5
    assert lm.kwargs["temperature"] == 0.0
    assert clone("two") == ["fake answer: two"]
    assert len(clone.history) == 2 and len(lm.history) == 1
    assert clone.provider is lm.provider


def test_cache_disabled_in_settings_wins(
    monkeypatch: pytest.MonkeyPatch, fake_lm: FakeLMServer
) -> None:
    monkeypatch.setenv("DSPYQ_CACHE__ENABLED", "false")
    reload_settings()
    try:
        lm = openai_lm(fake_lm, cache=True)
        lm("q")
        lm("q", cache=True)
        assert len(fake_lm.requests) == 2
    finally:
        monkeypatch.undo()
        reload_settings()


def test_global_history_size_can_shrink_and_keeps_the_newest() -> None:
    from dspyq.lm import history

    history.clear_history()
    try:
        for i in range(5):
            history.record({"i": i})
        history.set_history_size(2)
        assert [e["i"] for e in history.global_history()] == [3, 4]
        history.record({"i": 5})
        assert [e["i"] for e in history.global_history()] == [4, 5]
        with pytest.raises(ValueError):
            history.set_history_size(-1)
    finally:
        history.set_history_size(history.MAX_HISTORY)
        history.clear_history()

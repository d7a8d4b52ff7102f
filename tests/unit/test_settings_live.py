"""Which settings may change live, and how a change is checked before it is stored."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from dspyq.errors import ConfigurationError
from dspyq.settings import Settings
from dspyq.settings_live import effective_items, validated_override, with_overrides


@pytest.fixture
def base() -> Settings:
    return Settings(
        database_url="postgresql://app:hunter2@db/dspyq",
        providers={"openai": {"api_key": SecretStr("sk-very-secret")}},
    )


@pytest.mark.parametrize(
    ("key", "raw", "stored"),
    [
        ("providers.openai.rate_limit", "300/m", "300/m"),
        ("PROVIDERS.OpenAI.breaker_fail_max", "3", 3),
        ("providers.openai.breaker_reset_timeout", "2.5", 2.5),
        ("providers.openai.tokens_per_minute", "null", None),
        ("providers.anthropic.redact", "true", True),
        ("cache.ttl", "60", 60),
        ("cache.enabled", "false", False),
        ("optimization.copro.breadth", "4", 4),
    ],
)
def test_live_keys_are_validated_and_stored_typed(
    base: Settings, key: str, raw: str, stored: object
) -> None:
    name, value, result = validated_override(base, {}, key, raw)
    assert name == key.lower()
    assert value == stored
    node: object = result
    for part in name.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    assert node == stored


@pytest.mark.parametrize(
    ("key", "raw", "message"),
    [
        ("providers.openai.api_key", "sk-x", "is a secret"),
        ("broker_url", "redis://elsewhere", "restart"),
        ("database_url", "sqlite://", "restart"),
        ("key_prefix", "other", "restart"),
        ("providers.openai.api_base", "http://evil", "restart"),
        ("allowed_imports", '["os"]', "restart"),
        ("providers.openai.rate_limit", "fast", "N/s, N/m or N/h"),
        ("cache.ttl", "soon", "cache.ttl"),
        ("cache", "{}", "is a section"),
        ("cache.nope", "1", "unknown key 'cache.nope'"),
        ("providers.nosuch.rate_limit", "1/s", "no such entry"),
        ("", "1", "not a settings key"),
    ],
)
def test_refused_changes_say_why_in_one_line(
    base: Settings, key: str, raw: str, message: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        validated_override(base, {}, key, raw)
    assert message in info.value.message
    assert "\n" not in info.value.message
    assert raw not in info.value.message or raw in ("fast", "1")


def test_overrides_apply_on_top_of_the_base_and_keep_its_secrets(base: Settings) -> None:
    result = with_overrides(base, {"providers.openai.rate_limit": "9/s", "cache.ttl": 5})
    assert result.providers["openai"].rate_limit == "9/s"
    assert result.cache.ttl == 5
    assert result.providers["openai"].api_key == SecretStr("sk-very-secret")
    assert result.providers["anthropic"].rate_limit == base.providers["anthropic"].rate_limit
    assert base.cache.ttl == 3600  # the base is not changed


def test_effective_items_mask_secrets_and_url_passwords(base: Settings) -> None:
    items = dict(effective_items(base))
    assert items["providers.openai.api_key"] == "**********"
    assert items["providers.anthropic.api_key"] is None
    assert "hunter2" not in str(items["database_url"])
    assert items["providers.openai.rate_limit"] == base.providers["openai"].rate_limit

"""The sentinel:// URL form: what dspyq, Celery's result backend and kombu are given."""

from __future__ import annotations

import pytest

from dspyq.errors import ConfigurationError
from dspyq.resilience.redis_client import redacted_url
from dspyq.sentinel_url import celery_url, parse_sentinel_url
from dspyq.settings import Settings
from dspyq.tasks.app import celery_config

URL = "sentinel://:pw@h1:26379/2;sentinel://h2:26380;sentinel://h3?master_name=main"


def test_every_sentinel_and_the_first_address_db_and_password_are_read() -> None:
    target = parse_sentinel_url(URL)
    assert target.sentinels == [("h1", 26379), ("h2", 26380), ("h3", 26379)]
    assert (target.master_name, target.db, target.password) == ("main", 2, "pw")


def test_celery_gets_the_url_without_master_name_and_the_name_as_an_option() -> None:
    assert celery_url(URL) == (URL.partition("?")[0], {"master_name": "main"})
    assert celery_url("redis://h:6379/0") == ("redis://h:6379/0", {})


def test_results_and_a_redis_broker_behind_sentinel_get_master_name() -> None:
    conf = celery_config(Settings(broker_url=URL, key_prefix="p"))
    assert conf["broker_url"] == conf["result_backend"] == URL.partition("?")[0]
    assert conf["broker_transport_options"]["master_name"] == "main"
    assert conf["result_backend_transport_options"]["master_name"] == "main"
    assert conf["result_backend_transport_options"]["global_keyprefix"] == "p:"


def test_a_missing_master_name_or_bad_address_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="master_name"):
        parse_sentinel_url("sentinel://:secret@h1:26379/0")
    with pytest.raises(ConfigurationError, match="sentinel://host:port") as info:
        parse_sentinel_url("sentinel://:secret@h1:26379;redis://h2?master_name=m")
    assert "secret" not in str(info.value)


def test_redacted_url_hides_the_password_of_every_address() -> None:
    assert redacted_url("sentinel://:pw@h1:26379;sentinel://:pw@h2:26379/0") == (
        "sentinel://:***@h1:26379;sentinel://:***@h2:26379/0"
    )

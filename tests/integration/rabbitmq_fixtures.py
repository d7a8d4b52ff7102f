"""The RabbitMQ broker of the tests that run dspyq on AMQP (``DSPYQ_TEST_AMQP_URL``).

Each test deployment works under its own key prefix, which names its queues and
exchanges on the broker (see :mod:`dspyq.tasks.broker`), so tests share one vhost.
"""

from __future__ import annotations

import os

import pytest
from kombu import Connection

AMQP_URL_ENV = "DSPYQ_TEST_AMQP_URL"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """URL of a running RabbitMQ (checked once: these tests need the real broker)."""
    url = os.environ.get(AMQP_URL_ENV, DEFAULT_AMQP_URL)
    with Connection(url, connect_timeout=3) as connection:
        try:
            connection.ensure_connection(max_retries=1)
        except connection.connection_errors as exc:
            pytest.fail(f"no RabbitMQ at {url} ({exc}); start one or set {AMQP_URL_ENV}")
    return url

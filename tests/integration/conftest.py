"""Fixtures shared by the integration tests; each part keeps its own in a module here."""

from process_fixtures import broker_url  # noqa: F401
from rabbitmq_fixtures import amqp_url  # noqa: F401
from redis_fixtures import client, prefix, redis_url  # noqa: F401
from store_fixtures import (  # noqa: F401
    postgres_admin_url,
    postgres_url,
    process_context,
    sqlite_url,
    store_engine,
    store_url,
)

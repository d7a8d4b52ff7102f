"""Alembic, driven from code: the store's migrations ship inside the package.

:func:`alembic_config` points Alembic at the packaged ``migrations`` directory, so
``init_db`` works from an installed wheel with no ``alembic.ini`` around. To write a
new migration, change the tables in ``models.py`` and run, from the repository::

    python -c "from alembic import command; from dspyq.store.migrate import alembic_config; \\
      command.revision(alembic_config(url='sqlite:///scratch.db'), 'why', autogenerate=True)"

after upgrading ``scratch.db`` to head; then review the generated file by hand.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, func, select

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Any fixed 64-bit number works; this one spells "dspyq" in ASCII.
_ADVISORY_LOCK_KEY = 0x6473707971


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic config for the packaged migrations, on ``connection`` or ``url``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade_to_head(connection: Connection) -> None:
    """Run the pending migrations on ``connection``, inside its open transaction.

    On PostgreSQL, a transaction-scoped advisory lock serialises concurrent callers
    (it is released when the caller commits). SQLite callers are expected to hold the
    database's write lock already (``BEGIN IMMEDIATE``).
    """
    if connection.dialect.name == "postgresql":
        connection.execute(select(func.pg_advisory_xact_lock(_ADVISORY_LOCK_KEY)))
    command.upgrade(alembic_config(connection), "head")

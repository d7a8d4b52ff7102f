"""Column types shared by the hand-written migrations (one definition, every revision).

They must stay as they are once a revision uses them: a change here would change what
an old revision creates. A new type gets a new function.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


def json_type() -> sa.types.TypeEngine[Any]:
    """JSON, stored as JSONB on PostgreSQL."""
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def timestamp_type() -> sa.DateTime:
    """A timezone-aware timestamp."""
    return sa.DateTime(timezone=True)


def big_id_type() -> sa.types.TypeEngine[int]:
    """A 64-bit key, plain INTEGER on SQLite (so it stays the rowid alias)."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def id_type() -> sa.String:
    """A string identifier (task ids, correlation ids, event ids)."""
    return sa.String(length=255)

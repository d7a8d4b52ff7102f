"""dspyq's SQL store: executions, events, LM requests and the L3 cache.

Every repository receives an engine (the seam), made by :func:`make_engine` and
brought to the current schema by :func:`init_db`::

    engine = make_engine("sqlite:///dspyq.db")   # or postgresql://user@host/db
    init_db(engine)
    ExecutionStore(engine).create_pending(task_id, correlation_id, "qa", "Predict", lm, inputs)
"""

from dspyq.store.cache import SQLCache
from dspyq.store.engine import init_db, make_engine
from dspyq.store.events import EventStore
from dspyq.store.executions import ExecutionStore
from dspyq.store.lm_requests import LMRequestStore, LMUsage
from dspyq.store.models import (
    CacheEntry,
    EventRecord,
    ExecutionRecord,
    ExecutionStatus,
    LMRequestRecord,
)

__all__ = [
    "CacheEntry",
    "EventRecord",
    "EventStore",
    "ExecutionRecord",
    "ExecutionStatus",
    "ExecutionStore",
    "LMRequestRecord",
    "LMRequestStore",
    "LMUsage",
    "SQLCache",
    "init_db",
    "make_engine",
]

"""The store's tables: executions, events, LM requests, the L3 cache, evaluations and
saved programs.

All tables hang off :data:`metadata` (not SQLModel's global one) so that the store's
migrations see exactly the store's tables, with constraint names fixed by a naming
convention. New tables subclass :class:`StoreTable` and get a migration.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from dspyq.store.columns import JSONColumn, UTCDateTime, utcnow

ExecutionStatus = Literal["pending", "running", "succeeded", "failed"]
EXECUTION_STATUSES: tuple[ExecutionStatus, ...] = ("pending", "running", "succeeded", "failed")
LMRequestStatus = Literal["succeeded", "failed"]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class StoreTable(SQLModel):
    """Base of the store's tables; binds them to the store's own :data:`metadata`."""

    metadata: ClassVar[MetaData] = metadata


def _id(length: int = 255) -> Any:
    return String(length)


# Events and LM requests grow without bound: 64-bit keys on PostgreSQL. SQLite needs
# plain INTEGER for its rowid alias (and its integers are 64-bit anyway).
BigId = BigInteger().with_variant(Integer(), "sqlite")


class ExecutionRecord(StoreTable, table=True):
    """One module execution, keyed by its task id so a redelivered task writes once."""

    __tablename__ = "executions"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'running', 'succeeded', 'failed')", name="status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    task_id: str = Field(sa_type=_id(), unique=True)
    correlation_id: str | None = Field(default=None, sa_type=_id(), index=True)
    parent_id: str | None = Field(default=None, sa_type=_id())
    status: str = Field(default="pending", sa_type=String(16), index=True)
    program: str | None = Field(default=None, sa_type=String(255))
    module_type: str | None = Field(default=None, sa_type=String(255))
    lm: str | None = Field(default=None, sa_type=String(255))
    inputs: dict[str, Any] | None = Field(default=None, sa_type=JSONColumn, nullable=True)
    outputs: dict[str, Any] | None = Field(default=None, sa_type=JSONColumn, nullable=True)
    error: dict[str, Any] | None = Field(default=None, sa_type=JSONColumn, nullable=True)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    lm_calls: int = 0
    attempts: int = 0
    node: str | None = Field(default=None, sa_type=String(255))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    duration_ms: float | None = None
    # The saved program version that served the job (None: the job carried its program).
    program_name: str | None = Field(default=None, sa_type=String(255))
    program_version: int | None = None


class EventRecord(StoreTable, table=True):
    """One stored :class:`dspyq.events.Event`; ``event_id`` makes re-appends no-ops."""

    __tablename__ = "events"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    event_id: str = Field(sa_type=_id(), unique=True)
    event_type: str = Field(sa_type=String(255), index=True)
    timestamp: datetime = Field(sa_type=UTCDateTime)
    node: str = Field(sa_type=String(255))
    pid: int
    correlation_id: str | None = Field(default=None, sa_type=_id(), index=True)
    parent_id: str | None = Field(default=None, sa_type=_id())
    data: dict[str, Any] = Field(default_factory=dict, sa_type=JSONColumn)
    truncated: bool = False


class LMRequestRecord(StoreTable, table=True):
    """One LM call (or cache hit) with its usage and cost, keyed by request id."""

    __tablename__ = "lm_requests"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    request_id: str = Field(sa_type=_id(), unique=True)
    correlation_id: str | None = Field(default=None, sa_type=_id(), index=True)
    task_id: str | None = Field(default=None, sa_type=_id(), index=True)
    provider: str | None = Field(default=None, sa_type=String(255))
    model: str = Field(sa_type=String(255))
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    duration_ms: float | None = None
    cache_hit: bool = False
    status: str = Field(default="succeeded", sa_type=String(16))
    error: dict[str, Any] | None = Field(default=None, sa_type=JSONColumn, nullable=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class CacheEntry(StoreTable, table=True):
    """One L3 cache entry; ``expires_at`` NULL means it never expires."""

    __tablename__ = "cache_entries"

    key: str = Field(sa_type=String(512), primary_key=True)
    value: Any = Field(sa_type=JSONColumn)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)


class EvaluationRecord(StoreTable, table=True):
    """One distributed evaluation of a program on a devset with a metric.

    ``score`` is the percentage Evaluate reports; ``errors`` counts the examples that
    failed (scored ``failure_score``). Each example's execution has ``parent_id`` = ``id``.
    """

    __tablename__ = "evaluations"
    __table_args__ = (
        CheckConstraint("status IN ('running', 'succeeded', 'failed')", name="status"),
    )

    id: str = Field(sa_type=_id(), primary_key=True)
    correlation_id: str = Field(sa_type=_id(), index=True)
    program: str = Field(sa_type=String(255))
    metric: str = Field(sa_type=String(255))
    lm: str = Field(sa_type=String(255))
    status: str = Field(default="running", sa_type=String(16))
    score: float | None = None
    n: int = 0
    errors: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class EvaluationRowRecord(StoreTable, table=True):
    """One example of an evaluation: its position in the devset, its task and score."""

    __tablename__ = "evaluation_rows"
    __table_args__ = (UniqueConstraint("evaluation_id", "example_index"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    evaluation_id: str = Field(
        sa_type=_id(), sa_column_args=[ForeignKey("evaluations.id", ondelete="CASCADE")]
    )
    example_index: int
    task_id: str | None = Field(default=None, sa_type=_id())
    score: float | None = None
    error: dict[str, Any] | None = Field(default=None, sa_type=JSONColumn, nullable=True)


class ProgramRecord(StoreTable, table=True):
    """One saved version of a named program: its :class:`ProgramSpec` JSON and score."""

    __tablename__ = "programs"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    # The unique (name, version) index also serves lookups by name.
    name: str = Field(sa_type=String(255))
    version: int
    kind: str = Field(sa_type=String(255))
    spec: dict[str, Any] = Field(sa_type=JSONColumn)
    score: float | None = None
    run_id: str | None = Field(default=None, sa_type=_id())
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


RunStatus = Literal["pending", "running", "succeeded", "failed", "cancelled", "budget_exhausted"]
RUN_STATUSES: tuple[RunStatus, ...] = (
    "pending",
    "running",
    "succeeded",
    "failed",
    "cancelled",
    "budget_exhausted",
)
TERMINAL_RUN_STATUSES: frozenset[str] = frozenset(
    {"succeeded", "failed", "cancelled", "budget_exhausted"}
)


class OptimizationRunRecord(StoreTable, table=True):
    """One optimization run on the queue: its optimizer, progress and last checkpoint.

    ``checkpoint`` is everything the coordinator needs to resume after its worker died:
    the next round, every evaluated candidate's score and the best program so far.
    Its LM calls carry ``correlation_id``, which is how its budget is summed.
    """

    __tablename__ = "optimization_runs"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled', "
            "'budget_exhausted')",
            name="status",
        ),
    )

    id: str = Field(sa_type=_id(), primary_key=True)
    correlation_id: str = Field(sa_type=_id(), index=True)
    optimizer: str = Field(sa_type=String(255))
    config: dict[str, Any] = Field(default_factory=dict, sa_type=JSONColumn)
    program: str = Field(sa_type=String(255))
    lm: str = Field(sa_type=String(255))
    status: str = Field(default="pending", sa_type=String(16), index=True)
    best_score: float | None = None
    iterations: int = 0
    stop_reason: str | None = Field(default=None, sa_type=String(1024))
    checkpoint: dict[str, Any] | None = Field(default=None, sa_type=JSONColumn, nullable=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


# --- the production loop: aliases, deployments, feedback, alerts, lineage ------------

DEPLOYMENT_STATUSES = ("running", "succeeded", "canary", "failed")


class AliasRecord(StoreTable, table=True):
    """Where an alias of a program points: its version, and a canary taking a share.

    ``revision`` grows by one at every move; a move names the revision it read, so two
    deployments racing for one alias cannot both win (compare-and-set).
    """

    __tablename__ = "program_aliases"
    __table_args__ = (UniqueConstraint("name", "alias"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_type=String(255))
    alias: str = Field(sa_type=String(255))
    version: int
    canary_version: int | None = None
    canary_fraction: float | None = None
    revision: int = 1
    deployment_id: str | None = Field(default=None, sa_type=_id())
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class DeploymentRecord(StoreTable, table=True):
    """One run of the deployment pipeline (``id`` is its correlation id), kept as history.

    ``steps`` lists each step as it ended: ``{"step", "status", "at", "result"|"error"}``.
    """

    __tablename__ = "deployments"
    __table_args__ = (
        CheckConstraint("status IN ('running', 'succeeded', 'canary', 'failed')", name="status"),
    )

    id: str = Field(sa_type=_id(), primary_key=True)
    name: str = Field(sa_type=String(255), index=True)
    alias: str = Field(sa_type=String(255))
    action: str = Field(default="deploy", sa_type=String(32))
    version: int
    previous_version: int | None = None
    canary_fraction: float | None = None
    status: str = Field(default="running", sa_type=String(16))
    steps: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONColumn)
    error: dict[str, Any] | None = Field(default=None, sa_type=JSONColumn, nullable=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class FeedbackRecord(StoreTable, table=True):
    """A score a user gave one job's answer, tied to the program version that served it."""

    __tablename__ = "feedback"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    task_id: str = Field(sa_type=_id(), index=True)
    program_name: str | None = Field(default=None, sa_type=String(255), index=True)
    program_version: int | None = None
    score: float
    label: str | None = Field(default=None, sa_type=String(255))
    comment: str | None = Field(default=None, sa_type=String(4096))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AlertRecord(StoreTable, table=True):
    """A threshold crossed in one window, stored once however many watchers saw it.

    The unique key holds no NULLs (SQL lets NULLs repeat): ``""`` and ``0`` stand for
    "no program" / "no pool" / "no version".
    """

    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint(
            "kind",
            "program_name",
            "program_version",
            "pool",
            "window_start",
            "window_end",
            name="uq_alerts_window",  # the generated name passes PostgreSQL's 63 characters
        ),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    kind: str = Field(sa_type=String(255))
    observed: float
    threshold: float
    window_start: datetime = Field(sa_type=UTCDateTime)
    window_end: datetime = Field(sa_type=UTCDateTime)
    program_name: str = Field(default="", sa_type=String(255))
    program_version: int = 0
    pool: str = Field(default="", sa_type=String(255))
    details: dict[str, Any] = Field(default_factory=dict, sa_type=JSONColumn)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)


class LineageRecord(StoreTable, table=True):
    """Where a saved version came from: its parent, the run and the feedback it learned on."""

    __tablename__ = "program_lineage"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_type=String(255))
    version: int
    parent_version: int | None = None
    run_id: str | None = Field(default=None, sa_type=_id())
    feedback_ids: list[int] = Field(default_factory=list, sa_type=JSONColumn)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)

"""The ``feedback`` table: scores users give jobs' answers, tied to the version that served them.

:meth:`FeedbackStore.record` checks what it is given before writing anything: the job
must have an execution row (its program name and version are copied from it), and the
score must be a finite number. Feedback is what re-optimization learns from and what a
canary's mean score is judged by.
"""

from __future__ import annotations

import math
from datetime import datetime
from numbers import Real

from sqlalchemy import select
from sqlmodel import col

from dspyq.errors import InputError
from dspyq.store.columns import utcnow
from dspyq.store.engine import EngineStore, read_records, where_equal, write_transaction
from dspyq.store.models import ExecutionRecord, FeedbackRecord

__all__ = ["MAX_COMMENT_CHARS", "MAX_LABEL_CHARS", "FeedbackStore", "checked_score"]

MAX_LABEL_CHARS = 255
MAX_COMMENT_CHARS = 4096


class FeedbackStore(EngineStore):
    """Records and reads feedback through ``engine``."""

    def record(
        self,
        job_id: str,
        score: object,
        label: str | None = None,
        comment: str | None = None,
    ) -> FeedbackRecord:
        """Store feedback on job ``job_id``; InputError (nothing stored) for a job that
        has no execution, a score that is not a finite number, or text too long."""
        value = checked_score(score)
        _check_text("label", label, MAX_LABEL_CHARS)
        _check_text("comment", comment, MAX_COMMENT_CHARS)
        if not isinstance(job_id, str) or not job_id.strip():
            raise InputError(f"feedback needs a job id (a non-empty string), not {job_id!r:.80}")
        with write_transaction(self.engine, f"record feedback on job {job_id}") as conn:
            execution = conn.execute(
                select(
                    col(ExecutionRecord.program_name), col(ExecutionRecord.program_version)
                ).where(col(ExecutionRecord.task_id) == job_id)
            ).first()
            if execution is None:
                raise InputError(
                    f"no job {job_id!r:.80} is recorded: feedback is given on a job that ran "
                    "(its id is job.id)",
                    context={"job_id": job_id[:255]},
                )
            record = FeedbackRecord(
                task_id=job_id,
                program_name=execution[0],
                program_version=execution[1],
                score=value,
                label=label,
                comment=comment,
                created_at=utcnow(),
            )
            inserted = conn.execute(
                FeedbackRecord.__table__.insert().values(**record.model_dump(exclude={"id"}))  # type: ignore[attr-defined]
            )
            key = inserted.inserted_primary_key
            record.id = None if key is None else int(key[0])
        return record

    def list(
        self,
        *,
        program_name: str | None = None,
        program_version: int | None = None,
        job_id: str | None = None,
        since: datetime | None = None,
    ) -> list[FeedbackRecord]:
        """Feedback, oldest first, narrowed by program, version, job and time."""
        query = where_equal(
            select(FeedbackRecord).order_by(col(FeedbackRecord.id)),
            FeedbackRecord,
            program_name=program_name,
            program_version=program_version,
            task_id=job_id,
        )
        if since is not None:
            query = query.where(col(FeedbackRecord.created_at) >= since)
        return read_records(self.engine, "read feedback", FeedbackRecord, query)


def checked_score(score: object) -> float:
    """``score`` as a float if it is a finite real number (bools refused); InputError if not."""
    if isinstance(score, bool) or not isinstance(score, Real):
        raise InputError(
            f"a feedback score is a number (e.g. 0.0 to 1.0), not {type(score).__name__} "
            f"{score!r:.80}",
            context={"score": repr(score)[:80]},
        )
    value = float(score)
    if not math.isfinite(value):
        raise InputError(
            f"a feedback score must be finite, not {value}", context={"score": str(value)}
        )
    return value


def _check_text(what: str, text: str | None, limit: int) -> None:
    if text is None:
        return
    if not isinstance(text, str):
        raise InputError(f"a feedback {what} is a string, not {type(text).__name__}")
    if len(text) > limit:
        raise InputError(f"a feedback {what} may hold at most {limit} characters, not {len(text)}")

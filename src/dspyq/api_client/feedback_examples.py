"""Examples learned from feedback: each job's inputs with the best-scored answer to them.

Feedback on a program (any of its versions) is joined with the executions it scored.
Jobs asked the same inputs are one example, labelled with the outputs of the job that
scored best. The split into a trainset and a held-out set is by a hash of the inputs,
so it is the same from one improvement run to the next.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select
from sqlmodel import col

from dspyq.core.example import Example
from dspyq.store.engine import read_connection
from dspyq.store.models import ExecutionRecord, FeedbackRecord

__all__ = ["FeedbackExamples", "feedback_examples"]


@dataclass
class FeedbackExamples:
    """The examples, which feedback rows they came from, and how many rows there were."""

    train: list[Example] = field(default_factory=list)
    heldout: list[Example] = field(default_factory=list)
    feedback_ids: list[int] = field(default_factory=list)
    rows: int = 0


def feedback_examples(engine: Engine, name: str, holdout: float) -> FeedbackExamples:
    """The feedback of ``name`` as examples, ``holdout`` of them (at least one) held out."""
    query = (
        select(
            col(FeedbackRecord.id),
            col(FeedbackRecord.score),
            col(ExecutionRecord.inputs),
            col(ExecutionRecord.outputs),
        )
        .join(ExecutionRecord, col(ExecutionRecord.task_id) == col(FeedbackRecord.task_id))
        .where(col(FeedbackRecord.program_name) == name)
        .order_by(col(FeedbackRecord.id))
    )
    with read_connection(engine, f"read the feedback of {name!r}") as conn:
        rows = conn.execute(query).all()
    best: dict[str, tuple[float, int, dict[str, Any], dict[str, Any]]] = {}
    for feedback_id, score, inputs, outputs in rows:
        if not inputs or not outputs:
            continue  # a failed job has no answer to learn from
        key = json.dumps(inputs, sort_keys=True, default=str)
        if key not in best or float(score) > best[key][0]:
            best[key] = (float(score), int(feedback_id), dict(inputs), dict(outputs))
    found = FeedbackExamples(rows=len(rows))
    keyed = sorted(best.items(), key=lambda item: hashlib.sha256(item[0].encode()).hexdigest())
    held = max(1, round(len(keyed) * holdout)) if len(keyed) > 1 else 0
    for index, (_key, (_score, feedback_id, inputs, outputs)) in enumerate(keyed):
        example = Example(**inputs, **outputs).with_inputs(*inputs)
        (found.heldout if index < held else found.train).append(example)
        found.feedback_ids.append(feedback_id)
    found.feedback_ids.sort()
    return found

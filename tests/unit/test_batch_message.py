"""A batch message carries its jobs' shared program spec once."""

from __future__ import annotations

import json
from typing import Any

from dspyq.tasks.batch_messages import BatchItem, batch_message
from dspyq.tasks.batch_messages import items_of as _items_of


def _request(question: str, program: dict[str, Any]) -> dict[str, Any]:
    return {"program": program, "inputs": {"question": question}, "lm": "openai/m"}


def test_a_shared_program_travels_once_and_every_job_gets_it_back() -> None:
    program = {"kind": "dspyq.core.predict:Predict", "demos": ["x" * 1000]}
    items = [BatchItem(f"t{i}", _request(f"q{i}", dict(program))) for i in range(20)]
    message = batch_message(items)
    assert message["program"] == program
    assert all("program" not in job["request"] for job in message["jobs"])
    assert len(json.dumps(message)) < 2 * len(json.dumps(program)) + 20 * 200

    decoded = json.loads(json.dumps(message))
    restored = _items_of(decoded["jobs"], decoded["program"])
    assert restored == items
    assert all(item.request["program"] is restored[0].request["program"] for item in restored)


def test_jobs_with_different_programs_each_keep_their_own() -> None:
    items = [
        BatchItem("t1", _request("q1", {"kind": "a"})),
        BatchItem("t2", _request("q2", {"kind": "b"})),
    ]
    message = batch_message(items)
    assert "program" not in message
    assert _items_of(message["jobs"], None) == items


def test_messages_of_earlier_clients_still_read() -> None:
    items = [BatchItem("t1", _request("q1", {"kind": "a"}))]
    old_style = {"jobs": [item.to_json() for item in items]}
    assert _items_of(old_style["jobs"], old_style.get("program")) == items

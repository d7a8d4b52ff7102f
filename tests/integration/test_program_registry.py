"""Compiled programs stored and versioned in SQL, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import dspyq
from dspyq.api_client import Client
from dspyq.errors import InputError
from dspyq.settings import Settings
from dspyq.testing.cluster import REDIS_URL

pytestmark = pytest.mark.integration


@pytest.fixture
def client(store_url: str) -> Iterator[Client]:
    settings = Settings(
        broker_url=REDIS_URL, key_prefix=f"dspyqt{uuid.uuid4().hex[:10]}", database_url=store_url
    )
    with Client(settings) as client:
        yield client


def _compiled(instructions: str, demo_answer: str) -> dspyq.ChainOfThought:
    """A ChainOfThought with learned instructions and one demo, as an optimizer leaves it."""
    program = dspyq.ChainOfThought("question -> answer")
    predictor = program.predict
    predictor.signature = predictor.signature.with_instructions(instructions)
    predictor.demos = [dspyq.Example(question="What is 2+2?", reasoning="Add.", answer=demo_answer)]
    return program


def test_save_list_and_load_versions_by_name(client: Client) -> None:
    first, second = _compiled("Answer briefly.", "4"), _compiled("Answer in one word.", "four")

    assert client.save_program("qa", first) == 1
    assert client.save_program("qa", second, score=81.5, run_id="run-7") == 2
    assert client.save_program("other", first) == 1

    versions = client.list_programs("qa")
    assert [(v.version, v.score, v.run_id) for v in versions] == [
        (1, None, None),
        (2, 81.5, "run-7"),
    ]
    assert all(v.kind == "dspyq.core.chain_of_thought:ChainOfThought" for v in versions)
    assert [(v.name, v.version) for v in client.list_programs()] == [
        ("other", 1),
        ("qa", 1),
        ("qa", 2),
    ]
    latest = client.load_program("qa")
    assert isinstance(latest, dspyq.ChainOfThought)
    assert latest.dump_state() == second.dump_state()
    assert client.load_program("qa", version=1).dump_state() == first.dump_state()
    assert latest.predict.signature.equals(second.predict.signature)


def test_missing_program_is_an_input_error_naming_saved_versions(client: Client) -> None:
    with pytest.raises(InputError, match="No program 'nope'"):
        client.load_program("nope")
    client.save_program("qa", _compiled("x", "4"))
    with pytest.raises(InputError, match=r"saved versions: \[1\]"):
        client.load_program("qa", version=3)
    with pytest.raises(InputError, match="name"):
        client.save_program("", _compiled("x", "4"))


def test_export_and_import_round_trip_through_dspy_json_state(
    client: Client, tmp_path: Path
) -> None:
    compiled = _compiled("Answer in one word.", "four")
    client.save_program("qa", compiled, score=90.0)
    path = client.export_program("qa", 1, tmp_path / "qa.json")

    state = json.loads(path.read_text())
    assert state["predict"]["signature"]["instructions"] == "Answer in one word."
    assert state["predict"]["demos"][0]["answer"] == "four"
    assert "metadata" in state  # DSPy's saved form carries its dependency versions

    template = dspyq.ChainOfThought("question -> answer")
    before = template.dump_state()
    assert client.import_program("qa", template, path) == 2
    assert template.dump_state() == before  # the skeleton itself is left as it was
    imported = client.load_program("qa")
    assert imported.dump_state() == compiled.dump_state()
    assert [(v.version, v.score) for v in client.list_programs("qa")] == [(1, 90.0), (2, None)]

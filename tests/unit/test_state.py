"""Saved state: dspyq reads and writes DSPy 3.4.1's program JSON."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from dspyq.core.chain_of_thought import ChainOfThought
from dspyq.core.example import Example
from dspyq.core.module import Module
from dspyq.core.predict import Predict
from dspyq.core.state import dependency_versions
from dspyq.errors import StateError
from dspyq.lm import LM

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"
SAVED_COT = REFERENCE / "dspy-3.4.1-saved-chain-of-thought.json"

DSPY_LM_STATE = {
    "_dspy_lm_class": "dspy.clients.lm.LM",
    "model": "openai/gpt-4o-mini",
    "model_type": "chat",
    "cache": False,
    "num_retries": 3,
    "temperature": 0.0,
    "max_tokens": 256,
    "engine": "litellm",
    "finetuning_model": None,
    "launch_kwargs": {},
    "train_kwargs": {},
}


def _predictor_state(
    fields: list[tuple[str, str]], demos: list[dict[str, Any]], lm: Any
) -> dict[str, Any]:
    return {
        "traces": [],
        "train": [],
        "demos": demos,
        "signature": {
            "instructions": "Given the fields `question`, produce the fields `search_query`."
            if len(fields) == 2
            else "Given the fields `question`, `search_query`, produce the fields `answer`.",
            "fields": [{"prefix": p, "description": d} for p, d in fields],
        },
        "lm": lm,
    }


# The RewriteThenAnswer program as DSPy 3.4.1 saves it after BootstrapFewShot.
DSPY_REWRITE_THEN_ANSWER = {
    "rewrite": _predictor_state(
        [("Question:", "${question}"), ("Search Query:", "${search_query}")],
        [
            {
                "augmented": True,
                "question": "capital of France?",
                "search_query": "capital of France? city",
            },
            {
                "augmented": True,
                "question": "capital of Japan?",
                "search_query": "capital of Japan? city",
            },
            {"question": "capital of Kenya?", "answer": "Nairobi"},
        ],
        DSPY_LM_STATE,
    ),
    "answer.predict": _predictor_state(
        [
            ("Question:", "${question}"),
            ("Search Query:", "${search_query}"),
            ("Reasoning:", "${reasoning}"),
            ("Answer:", "${answer}"),
        ],
        [
            {
                "augmented": True,
                "question": "capital of France?",
                "search_query": "capital of France? city",
                "reasoning": "Paris is the capital.",
                "answer": "Paris",
            }
        ],
        None,
    ),
    "metadata": {"dependency_versions": {"python": "3.11", "dspy": "3.4.1", "cloudpickle": "3.1"}},
}


class RewriteThenAnswer(Module):
    def __init__(self) -> None:
        super().__init__()
        self.rewrite = Predict("question -> search_query")
        self.answer = ChainOfThought("question, search_query -> answer")


def _write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return path


def _without_metadata(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k != "metadata"}


@pytest.mark.skipif(not SAVED_COT.exists(), reason="DSPy reference fixtures not present")
def test_program_saved_by_dspy_loads_and_dumps_the_same_state(tmp_path: Path):
    saved = json.loads(SAVED_COT.read_text(encoding="utf-8"))
    program = ChainOfThought("question -> answer")
    program.load(SAVED_COT)

    signature = program.predict.signature
    assert signature.instructions == "Answer questions with short factoid answers."
    assert (
        signature.output_fields["answer"].json_schema_extra["desc"] == "often between 1 and 5 words"
    )
    assert list(signature.fields) == ["question", "reasoning", "answer"]  # names come from code
    assert program.predict.demos[0] == Example(
        question="What is 1 + 1?", reasoning="add them", answer="2"
    )
    assert program.dump_state() == _without_metadata(saved)

    out = tmp_path / "program.json"
    program.save(out)
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written == {**saved, "metadata": {"dependency_versions": dependency_versions()}}
    if dependency_versions() == saved["metadata"]["dependency_versions"]:
        assert out.read_bytes() == SAVED_COT.read_bytes()  # byte for byte what DSPy wrote

    again = ChainOfThought("question -> answer")
    again.load(out)
    assert again.dump_state() == program.dump_state()


def test_rewrite_then_answer_saved_by_dspy_round_trips(tmp_path: Path):
    path = _write(tmp_path / "dspy.json", DSPY_REWRITE_THEN_ANSWER)
    program = RewriteThenAnswer()
    program.load(path)

    assert isinstance(program.rewrite.lm, LM)
    assert program.rewrite.lm.model == "openai/gpt-4o-mini"
    assert program.answer.predict.lm is None
    assert program.rewrite.demos[0].augmented is True
    assert program.dump_state() == _without_metadata(DSPY_REWRITE_THEN_ANSWER)

    out = tmp_path / "dspyq.json"
    program.save(out)
    reloaded = RewriteThenAnswer()
    reloaded.load(out)
    assert reloaded.dump_state() == program.dump_state()


def test_saved_file_is_indented_json_with_dspy_metadata(tmp_path: Path):
    out = tmp_path / "p.json"
    RewriteThenAnswer().save(out)
    text = out.read_text(encoding="utf-8")
    assert text.startswith('{\n  "rewrite": {\n    "traces": []')
    document = json.loads(text)
    assert list(document) == ["rewrite", "answer.predict", "metadata"]
    assert list(document["metadata"]["dependency_versions"]) == ["python", "dspy", "cloudpickle"]
    assert document["metadata"]["dependency_versions"]["dspy"] == "3.4.1"


def test_pydantic_demo_values_are_saved_in_json_mode(tmp_path: Path):
    class Answer(BaseModel):
        text: str
        score: float

    predict = Predict("question -> answer: Answer")
    predict.demos = [Example(question="q", answer=Answer(text="a", score=0.5))]
    state = predict.dump_state()
    assert state["demos"] == [{"question": "q", "answer": {"text": "a", "score": 0.5}}]
    predict.save(tmp_path / "p.json")  # JSON-serialisable


def test_a_file_for_another_program_is_refused_and_nothing_changes(tmp_path: Path):
    path = _write(tmp_path / "dspy.json", DSPY_REWRITE_THEN_ANSWER)
    program = ChainOfThought("question -> answer")
    before = program.dump_state()
    with pytest.raises(StateError, match="missing predictors \\['predict'\\]"):
        program.load(path)
    assert program.dump_state() == before


def test_a_signature_with_other_field_count_is_refused_before_anything_changes(tmp_path: Path):
    document = copy.deepcopy(DSPY_REWRITE_THEN_ANSWER)
    document["answer.predict"]["signature"]["fields"].pop()
    path = _write(tmp_path / "dspy.json", document)
    program = RewriteThenAnswer()
    before = program.dump_state()
    with pytest.raises(StateError, match="3 fields"):
        program.load(path)
    assert program.dump_state() == before  # the rewrite predictor was not touched either


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a readable JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"predict": {"demos": []}}', "predictor 'predict' is malformed: signature"),
        ('{"predict": {"signature": {"instructions": 1, "fields": []}}}', "instructions"),
    ],
)
def test_corrupt_files_raise_state_errors(tmp_path: Path, content: str, message: str):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(StateError, match=message):
        ChainOfThought("question -> answer").load(path)


def test_missing_file_is_a_state_error(tmp_path: Path):
    with pytest.raises(StateError, match="No such file or directory"):
        Predict("q -> a").load(tmp_path / "absent.json")


def test_version_mismatch_only_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    document = copy.deepcopy(DSPY_REWRITE_THEN_ANSWER)
    document["metadata"]["dependency_versions"]["dspy"] = "2.6.0"
    path = _write(tmp_path / "old.json", document)
    with caplog.at_level(logging.WARNING, logger="dspyq.core.state"):
        RewriteThenAnswer().load(path)
    assert any("dspy 2.6.0" in record.getMessage() for record in caplog.records)


def test_lm_endpoint_from_a_file_is_ignored_unless_trusted(tmp_path: Path):
    document = copy.deepcopy(DSPY_REWRITE_THEN_ANSWER)
    document["rewrite"]["lm"]["api_base"] = "http://attacker.example/v1"
    document["rewrite"]["lm"]["api_key"] = "sk-from-file"
    path = _write(tmp_path / "lm.json", document)

    safe = RewriteThenAnswer()
    safe.load(path)
    assert "attacker" not in str(safe.rewrite.lm.provider.config.api_base)

    trusted = RewriteThenAnswer()
    trusted.load(path, allow_unsafe_lm_state=True)
    assert trusted.rewrite.lm.provider.config.api_base.startswith("http://attacker.example")
    key = trusted.rewrite.lm.provider.config.api_key
    assert key is None or key.get_secret_value() != "sk-from-file"  # keys never come from files
    assert "sk-from-file" not in json.dumps(trusted.dump_state())


def test_save_refuses_other_suffixes_and_a_program_file(tmp_path: Path):
    program = RewriteThenAnswer()
    with pytest.raises(StateError, match=r"must end with `\.json` or `\.pkl`"):
        program.save(tmp_path / "p.txt")
    with pytest.raises(ValueError, match="directory without a suffix"):
        program.save(tmp_path / "p.json", save_program=True)


def test_a_single_predictor_saves_and_loads_its_flat_state(tmp_path: Path):
    predict = Predict("question -> answer")
    predict.demos = [Example(question="q", answer="a", dspy_uuid="u-1")]
    predict.save(tmp_path / "predict.json")
    document = json.loads((tmp_path / "predict.json").read_text(encoding="utf-8"))
    assert list(document) == ["traces", "train", "demos", "signature", "lm", "metadata"]
    assert document["demos"] == [{"question": "q", "answer": "a", "dspy_uuid": "u-1"}]

    reloaded = Predict("question -> answer")
    reloaded.load(tmp_path / "predict.json")
    assert reloaded.dump_state() == predict.dump_state()


def test_load_state_keeps_field_names_and_types_from_code():
    predict = Predict("question -> count: int")
    predict.load_state(
        {
            "demos": [{"question": "q", "count": 2}],
            "signature": {
                "instructions": "Count things.",
                "fields": [
                    {"prefix": "Q:", "description": "the question"},
                    {"prefix": "N:", "description": "how many"},
                ],
            },
            "lm": None,
        }
    )
    assert predict.signature.instructions == "Count things."
    assert predict.signature.output_fields["count"].annotation is int
    assert predict.signature.input_fields["question"].json_schema_extra["prefix"] == "Q:"
    assert predict.demos == [Example(question="q", count=2)]

"""KNNFewShot's compiled program as a program spec: rebuilt, it prompts as the original."""

from __future__ import annotations

import json

import numpy as np
import pytest

import dspyq
from dspyq.core.program import program_from_spec, program_to_spec
from dspyq.errors import InputError
from dspyq.optimize.knn_program import KNNFewShotProgram
from dspyq.testing.fake_embeddings import fake_vector
from dspyq.testing.fake_lm import FakeLMServer

ROWS = [("What is 2+2?", "4"), ("Capital of France?", "Paris"), ("Color of sky?", "blue")]


def vectors(batch: list[str]) -> np.ndarray:
    return np.array([fake_vector(text) for text in batch], dtype=np.float32)


def compiled(vectorizer: object) -> dspyq.Module:
    train = [dspyq.Example(question=q, answer=a).with_inputs("question") for q, a in ROWS]
    optimizer = dspyq.KNNFewShot(2, train, vectorizer, max_bootstrapped_demos=0)
    return optimizer.compile(dspyq.Predict("question -> answer"))


def test_a_rebuilt_knn_fewshot_program_sends_the_same_demos(fake_lm: FakeLMServer) -> None:
    fake_lm.answer_fields({"answer": "Madrid"})
    lm = dspyq.LM("openai/m", api_base=fake_lm.openai_base, api_key="t", cache=False)
    original = compiled(dspyq.Embedder(vectors, batch_size=2))
    wire = json.loads(json.dumps(program_to_spec(original).model_dump(mode="json")))
    rebuilt = program_from_spec(wire, allowed_prefixes=["test_knn_program"])
    assert isinstance(rebuilt, KNNFewShotProgram)
    assert rebuilt.vectorizer.batch_size == 2
    assert [e.inputs().toDict() for e in rebuilt.trainset] == [{"question": q} for q, _ in ROWS]
    with dspyq.context(lm=lm):
        assert original(question="Capital of Spain?").answer == "Madrid"
        assert rebuilt(question="Capital of Spain?").answer == "Madrid"
    first, second = (r["body"]["messages"] for r in fake_lm.requests)
    assert second == first
    assert {
        "role": "assistant",
        "content": "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]\n",
    } in first


def test_a_function_vectorizer_is_sent_by_import_path() -> None:
    spec = program_to_spec(compiled(vectors))
    assert spec.init["vectorizer"] == {"$dspyq": "import", "path": "test_knn_program:vectors"}


def test_a_lambda_vectorizer_is_refused_naming_the_argument() -> None:
    program = compiled(dspyq.Embedder(lambda batch: vectors(batch)))
    with pytest.raises(InputError, match=r"argument `vectorizer` of KNNFewShotProgram.*lambda"):
        program_to_spec(program)


def test_an_embedder_holding_an_api_key_is_refused() -> None:
    embedder = dspyq.Embedder("openai/text-embedding-3-small", api_key="secret")
    program = KNNFewShotProgram(dspyq.Predict("question -> answer"), 1, [], embedder)
    with pytest.raises(InputError, match="holds an api_key"):
        program_to_spec(program)

"""Embedder against DSPy 3.4.1: the same vectors from the same OpenAI-compatible server.

DSPy's Embedder reaches the fake server through LiteLLM, ours through httpx; both must
send the same request shape and return the same float32 arrays. The official ``openai``
SDK parses the fake server's embeddings response too.
"""

from __future__ import annotations

import dspy
import numpy as np
import openai
import pytest

import dspyq
from dspyq.testing.fake_embeddings import fake_vector
from dspyq.testing.fake_lm import FakeLMServer


def test_embedder_matches_dspy(fake_lm: FakeLMServer):
    options = {"api_base": fake_lm.openai_base, "api_key": "test", "caching": False}
    texts = ["hello", "héllo wörld", "third"]
    ours = dspyq.Embedder("openai/text-embedding-3-small", batch_size=2, **options)
    theirs = dspy.Embedder("openai/text-embedding-3-small", batch_size=2, **options)
    ours_rows, ours_one = ours(texts), ours("hello")
    ours_bodies = [entry["body"] for entry in fake_lm.requests]
    theirs_rows, theirs_one = theirs(texts), theirs("hello")
    assert ours_rows.dtype == theirs_rows.dtype == np.float32
    assert ours_rows.shape == theirs_rows.shape == (3, 8)
    np.testing.assert_array_equal(ours_rows, theirs_rows)
    np.testing.assert_array_equal(ours_one, theirs_one)
    assert [b["input"] for b in ours_bodies[:2]] == [["hello", "héllo wörld"], ["third"]]
    assert all(b["model"] == "text-embedding-3-small" for b in ours_bodies)


def test_embedder_with_a_callable_and_bad_inputs_like_dspy():
    def model(batch: list[str]) -> list[list[float]]:
        return [[float(len(text)), 1.0] for text in batch]

    np.testing.assert_array_equal(
        dspyq.Embedder(model)(["ab", "c"]), dspy.Embedder(model)(["ab", "c"])
    )
    for embedder in (dspyq.Embedder(model), dspy.Embedder(model)):
        with pytest.raises(ValueError, match="All inputs must be strings"):
            embedder(["ok", 3])  # type: ignore[list-item]


def test_the_openai_sdk_parses_the_fake_embeddings(fake_lm: FakeLMServer):
    client = openai.OpenAI(base_url=fake_lm.openai_base, api_key="test")
    response = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert [item.embedding for item in response.data] == [fake_vector("a"), fake_vector("b")]
    assert response.usage.total_tokens == 2


def test_knn_finds_the_same_neighbours_as_dspy():
    def model(batch: list[str]) -> list[list[float]]:
        return [fake_vector(text) for text in batch]

    rows = [("What is 2+2?", "4"), ("Capital of France?", "Paris"), ("Color of sky?", "blue")]
    ours_train = [dspyq.Example(question=q, answer=a).with_inputs("question") for q, a in rows]
    theirs_train = [dspy.Example(question=q, answer=a).with_inputs("question") for q, a in rows]
    ours = dspyq.KNN(2, ours_train, dspyq.Embedder(model))
    theirs = dspy.KNN(2, theirs_train, dspy.Embedder(model))
    for query in ("What is 3+3?", "Capital of Spain?"):
        found = [dict(e.items()) for e in ours(question=query)]
        assert found == [dict(e.items()) for e in theirs(question=query)]


def test_knn_few_shot_sends_the_same_demos_as_dspy(fake_lm: FakeLMServer):
    from dspy_reference import ScriptedLM

    def model(batch: list[str]) -> list[list[float]]:
        return [fake_vector(text) for text in batch]

    rows = [("What is 2+2?", "4"), ("Capital of France?", "Paris"), ("Color of sky?", "blue")]
    answer = "[[ ## answer ## ]]\nMadrid\n\n[[ ## completed ## ]]"
    fake_lm.answer(answer)
    lm = dspyq.LM("openai/m", api_base=fake_lm.openai_base, api_key="t", cache=False)
    train = [dspyq.Example(question=q, answer=a).with_inputs("question") for q, a in rows]
    compiled = dspyq.KNNFewShot(2, train, dspyq.Embedder(model), max_bootstrapped_demos=0).compile(
        dspyq.Predict("question -> answer")
    )
    with dspyq.context(lm=lm):
        ours = compiled(question="Capital of Spain?")

    scripted = ScriptedLM([answer] * 5)
    theirs_train = [dspy.Example(question=q, answer=a).with_inputs("question") for q, a in rows]
    reference = dspy.KNNFewShot(
        2, theirs_train, dspy.Embedder(model), max_bootstrapped_demos=0
    ).compile(dspy.Predict("question -> answer"))
    with dspy.context(lm=scripted):
        theirs = reference(question="Capital of Spain?")

    assert ours.answer == theirs.answer == "Madrid"
    assert [e["body"]["messages"] for e in fake_lm.requests] == scripted.calls
    # Saved as DSPy saves it: the student's predictors under the student's own keys.
    assert [n for n, _ in compiled.named_predictors()] == [
        n for n, _ in reference.named_predictors()
    ]
    assert set(compiled.dump_state()) == set(reference.dump_state())

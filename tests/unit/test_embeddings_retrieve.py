"""Embeddings and Retrieve against DSPy 3.4.1, on the same fake vectors and the same rm.

Both indexes embed with the fake server's deterministic vectors (directly, or through
each side's Embedder over HTTP) and must return the same passages, indices and scores;
an index saved by one side loads in the other.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import dspy
import numpy as np
import pytest
from dspy.retrievers.embeddings import EmbeddingsWithScores

import dspyq
from dspyq.core.retrieve import single_query_passage
from dspyq.retrievers import EmbeddingsWithScores as OurEmbeddingsWithScores
from dspyq.testing.fake_embeddings import fake_vector
from dspyq.testing.fake_lm import FakeLMServer

CORPUS = [
    "Paris is the capital of France.",
    "The sky is blue.",
    "Two plus two is four.",
    "héllo wörld",
    "",
    "The Eiffel Tower is in Paris.",
    "Cats sleep a lot.",
]
QUERIES = ["capital of France", "colour of the sky", "arithmetic", "", "ünïcode"]


def model(batch: list[str]) -> np.ndarray:
    return np.array([fake_vector(text) for text in batch], dtype=np.float32)


def results(index: Any, queries: list[str] = QUERIES) -> list[dict[str, Any]]:
    return [dict(index(query).items()) for query in queries]


@pytest.mark.parametrize("options", [{}, {"k": 3}, {"k": 10, "normalize": False}, {"k": 1}])
def test_embeddings_search_like_dspy(options: dict[str, Any]):
    ours = dspyq.Embeddings(CORPUS, model, **options)
    theirs = dspy.Embeddings(CORPUS, model, **options)
    np.testing.assert_array_equal(ours.corpus_embeddings, theirs.corpus_embeddings)
    found = results(ours)
    assert found == results(theirs)
    assert all(len(r["passages"]) == min(options.get("k", 5), len(CORPUS)) for r in found)
    assert all(r["passages"] == [CORPUS[i] for i in r["indices"]] for r in found)


def test_embeddings_with_scores_like_dspy():
    ours = results(OurEmbeddingsWithScores(CORPUS, model, k=4))
    theirs = results(EmbeddingsWithScores(CORPUS, model, k=4))
    assert [r["indices"] for r in ours] == [r["indices"] for r in theirs]
    for mine, reference in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(mine["scores"], reference["scores"], rtol=1e-6)
        assert mine["scores"] == sorted(mine["scores"], reverse=True)


def test_embeddings_through_each_embedder_over_http(fake_lm: FakeLMServer):
    options = {"api_base": fake_lm.openai_base, "api_key": "t", "caching": False}
    ours = dspyq.Embeddings(CORPUS, dspyq.Embedder("openai/text-embedding-3-small", **options))
    theirs = dspy.Embeddings(CORPUS, dspy.Embedder("openai/text-embedding-3-small", **options))
    assert results(ours, QUERIES[:2]) == results(theirs, QUERIES[:2])
    assert results(ours, QUERIES[:2]) == results(dspyq.Embeddings(CORPUS, model), QUERIES[:2])


def test_an_index_saved_by_one_side_loads_in_the_other(tmp_path: Path):
    dspyq.Embeddings(CORPUS, model, k=2, normalize=False).save(str(tmp_path / "ours"))
    dspy.Embeddings(CORPUS, model, k=3).save(str(tmp_path / "theirs"))
    for name in ("ours", "theirs"):
        path = str(tmp_path / name)
        mine = dspyq.Embeddings.from_saved(path, model)
        reference = dspy.Embeddings.from_saved(path, model)
        assert (mine.k, mine.normalize, mine.index) == (reference.k, reference.normalize, None)
        assert results(mine) == results(reference)
    assert (tmp_path / "ours" / "config.json").read_text() == (
        tmp_path / "theirs" / "config.json"
    ).read_text().replace('"k": 3', '"k": 2').replace('"normalize": true', '"normalize": false')
    for module in (dspyq, dspy):
        with pytest.raises(FileNotFoundError, match="Save directory not found"):
            module.Embeddings.from_saved(str(tmp_path / "missing"), model)
        (tmp_path / "bad").mkdir(exist_ok=True)
        (tmp_path / "bad" / "config.json").write_text('{"k": 1}')
        np.save(tmp_path / "bad" / "corpus_embeddings.npy", np.zeros((1, 8)))
        with pytest.raises(ValueError, match="missing required field 'normalize'"):
            module.Embeddings.from_saved(str(tmp_path / "bad"), model)


@pytest.mark.skipif(importlib.util.find_spec("faiss") is not None, reason="faiss installed")
def test_a_large_corpus_without_faiss_fails_like_dspy():
    for module in (dspyq, dspy):
        with pytest.raises(ImportError, match="pip install faiss-cpu"):
            module.Embeddings(CORPUS, model, brute_force_threshold=3)
        with pytest.raises(AssertionError, match="Caching is not supported"):
            module.Embeddings(CORPUS, model, cache=True)


class Passage:
    def __init__(self, text: str) -> None:
        self.long_text = text


class RecordingRM:
    """A retrieval model: the first ``k`` corpus passages containing a word of the query."""

    def __init__(self, single: bool = False) -> None:
        self.calls: list[tuple[str, int, dict[str, Any]]] = []
        self.single = single

    def __call__(self, query: str, k: int, **kwargs: Any) -> Any:
        self.calls.append((query, k, kwargs))
        words = query.lower().split()
        hits = [Passage(p) for p in CORPUS if any(w in p.lower() for w in words)][:k]
        return hits[0] if self.single else hits


def test_retrieve_like_dspy():
    ours_rm, theirs_rm = RecordingRM(), RecordingRM()
    with dspyq.context(rm=ours_rm):
        ours = [dspyq.Retrieve()(q) for q in ("paris", "the")] + [
            dspyq.Retrieve(k=1)("the", k=2, by="title")
        ]
    with dspy.context(rm=theirs_rm):
        theirs = [dspy.Retrieve()(q) for q in ("paris", "the")] + [
            dspy.Retrieve(k=1)("the", k=2, by="title")
        ]
    assert [dict(p.items()) for p in ours] == [dict(p.items()) for p in theirs]
    assert (
        ours_rm.calls
        == theirs_rm.calls
        == [
            ("paris", 3, {}),
            ("the", 3, {}),
            ("the", 2, {"by": "title"}),
        ]
    )
    assert ours[0].passages == ["Paris is the capital of France.", "The Eiffel Tower is in Paris."]


def test_retrieve_edge_cases_like_dspy():
    for module in (dspyq, dspy):
        with pytest.raises(AssertionError, match="No RM is loaded"):
            module.Retrieve()("q")
        with module.context(rm=RecordingRM(single=True)):
            assert module.Retrieve()("sky").passages == ["The sky is blue."]
        retrieve = module.Retrieve(k=4)
        assert (retrieve.name, retrieve.input_variable, retrieve.dump_state()) == (
            "Search",
            "query",
            {"k": 4},
        )
        assert retrieve.load_state({"k": 2}) is None and retrieve.k == 2
        assert len(retrieve.stage) == 16
    dspyq.configure(rm=RecordingRM())
    try:
        assert dspyq.settings.rm is not None
        assert dspyq.Retrieve(k=1)("cats").passages == ["Cats sleep a lot."]
    finally:
        dspyq.configure(rm=None)
    rows = [{"long_text": "a", "score": 1}, {"long_text": "b", "score": 2}]
    assert dict(single_query_passage(rows).items()) == dict(
        dspy.retrievers.retrieve.single_query_passage(rows).items()
    )


def test_retrieve_is_a_parameter_of_a_program_and_saves():
    # DSPy 3.4.1 finds it too, but its Retrieve.dump_state takes no json_mode, so saving a
    # program holding one raises TypeError there; dspyq saves ``k``.
    class OurRAG(dspyq.Module):
        def __init__(self) -> None:
            super().__init__()
            self.retrieve = dspyq.Retrieve(k=2)

    class TheirRAG(dspy.Module):
        def __init__(self) -> None:
            super().__init__()
            self.retrieve = dspy.Retrieve(k=2)

    ours, theirs = OurRAG(), TheirRAG()
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    with pytest.raises(TypeError, match="json_mode"):
        theirs.dump_state()
    assert ours.dump_state() == {"retrieve": {"k": 2}}
    ours.load_state({"retrieve": {"k": 5}})
    assert ours.retrieve.k == 5

"""Embeddings: an in-memory index returning the ``k`` corpus passages nearest a query.

As DSPy 3.4.1's ``dspy.Embeddings``: the corpus is embedded once (L2-normalised unless
``normalize=False``); a query is scored against every passage by dot product, or, from
``brute_force_threshold`` passages on, against candidates from a FAISS IVF-PQ index
(``faiss-cpu`` needed) re-ranked exactly. ``save``/``from_saved`` keep the corpus and
vectors in a folder (``config.json`` and ``corpus_embeddings.npy``), as DSPy's do.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from dspyq.core.example import Prediction

_REQUIRED_CONFIG = ("k", "normalize", "corpus", "has_faiss_index")


class Embeddings:
    """``Embeddings(corpus, embedder, k=5)(query)`` -> ``Prediction(passages, indices)``."""

    def __init__(
        self,
        corpus: list[str],
        embedder: Any,
        k: int = 5,
        callbacks: list[Any] | None = None,
        cache: bool = False,
        brute_force_threshold: int = 20_000,
        normalize: bool = True,
    ) -> None:
        assert cache is False, "Caching is not supported for embeddings-based retrievers"
        self.embedder = embedder
        self.k = k
        self.corpus = corpus
        self.normalize = normalize
        vectors = self.embedder(self.corpus)
        self.corpus_embeddings = self._normalize(vectors) if normalize else vectors
        self.index: Any = self._build_faiss() if len(corpus) >= brute_force_threshold else None

    def __call__(self, query: str) -> Prediction:
        return self.forward(query)

    def forward(self, query: str) -> Prediction:
        passages, indices, _scores = self._search(query)
        return Prediction(passages=passages, indices=indices)

    def _search(self, query: str) -> tuple[list[str], list[int], list[float]]:
        # DSPy batches concurrent queries into one embedder call; one query at a time
        # gives the same results.
        return self._batch_forward([query])[0]

    def _batch_forward(self, queries: list[str]) -> list[tuple[list[str], list[int], list[float]]]:
        vectors = self.embedder(queries)
        vectors = self._normalize(vectors) if self.normalize else vectors
        candidates = self._faiss_search(vectors, self.k * 10) if self.index else None
        return self._rerank(vectors, candidates)

    def _build_faiss(self) -> Any:
        nbytes = 32
        partitions = int(2 * np.sqrt(len(self.corpus)))
        dim = self.corpus_embeddings.shape[1]
        try:
            import faiss
        except ImportError:
            raise ImportError(
                "Please `pip install faiss-cpu` or increase `brute_force_threshold` to avoid FAISS."
            ) from None
        index = faiss.IndexIVFPQ(faiss.IndexFlatL2(dim), dim, partitions, nbytes, 8)
        print(
            f"Training a {nbytes}-byte FAISS index with {partitions} partitions, based on "
            f"{len(self.corpus)} x {dim}-dim embeddings"
        )
        index.train(self.corpus_embeddings)
        index.add(self.corpus_embeddings)
        index.nprobe = min(16, partitions)
        return index

    def _faiss_search(self, vectors: np.ndarray, num_candidates: int) -> np.ndarray:
        found: np.ndarray = self.index.search(vectors, num_candidates)[1]
        return found

    def _rerank(
        self, queries: np.ndarray, candidates: np.ndarray | None
    ) -> list[tuple[list[str], list[int], list[float]]]:
        if candidates is None:
            self.corpus_embeddings = np.ascontiguousarray(self.corpus_embeddings)
            scores = np.einsum("qd,kd->qk", queries, self.corpus_embeddings, order="C")
        else:
            scores = np.einsum("qd,qkd->qk", queries, self.corpus_embeddings[candidates])
        rows = np.arange(len(queries))[:, None]
        top_k = np.argsort(-scores, axis=1)[:, : self.k]
        top_indices = top_k if candidates is None else candidates[rows, top_k]
        top_scores = scores[rows, top_k]
        return [
            ([self.corpus[index] for index in indices], indices.tolist(), row_scores.tolist())
            for indices, row_scores in zip(top_indices, top_scores, strict=True)
        ]

    @staticmethod
    def _normalize(vectors: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        normalized: np.ndarray = vectors / np.maximum(norms, 1e-10)
        return normalized

    # --- persistence ----------------------------------------------------------------

    def save(self, path: str) -> None:
        """Write the corpus, configuration, vectors and any FAISS index under ``path``."""
        os.makedirs(path, exist_ok=True)
        config = {
            "k": self.k,
            "normalize": self.normalize,
            "corpus": self.corpus,
            "has_faiss_index": self.index is not None,
        }
        with open(os.path.join(path, "config.json"), "w") as handle:
            json.dump(config, handle, indent=2)
        np.save(os.path.join(path, "corpus_embeddings.npy"), self.corpus_embeddings)
        if self.index is not None:
            try:
                import faiss
            except ImportError:  # the vectors alone still allow brute-force search
                return
            faiss.write_index(self.index, os.path.join(path, "faiss_index.bin"))

    def load(self, path: str, embedder: Any) -> Embeddings:
        """Restore a saved index into this instance; ``embedder`` embeds new queries."""
        if not os.path.exists(path):
            raise FileNotFoundError(f"Save directory not found: {path}")
        config_path = os.path.join(path, "config.json")
        vectors_path = os.path.join(path, "corpus_embeddings.npy")
        if not os.path.exists(config_path):
            raise FileNotFoundError(f"Config file not found: {config_path}")
        if not os.path.exists(vectors_path):
            raise FileNotFoundError(f"Embeddings file not found: {vectors_path}")
        with open(config_path) as handle:
            config = json.load(handle)
        for field in _REQUIRED_CONFIG:
            if field not in config:
                raise ValueError(f"Invalid config: missing required field '{field}'")
        self.k, self.normalize, self.corpus = config["k"], config["normalize"], config["corpus"]
        self.embedder = embedder
        self.corpus_embeddings = np.load(vectors_path)
        self.index = None
        index_path = os.path.join(path, "faiss_index.bin")
        if config["has_faiss_index"] and os.path.exists(index_path):
            try:
                import faiss
            except ImportError:
                return self
            self.index = faiss.read_index(index_path)
        return self

    @classmethod
    def from_saved(cls, path: str, embedder: Any) -> Embeddings:
        """An index loaded from ``path`` without embedding the corpus again."""
        instance = cls.__new__(cls)
        return instance.load(path, embedder)


class EmbeddingsWithScores(Embeddings):
    """As :class:`Embeddings`, with each passage's similarity ``scores`` too."""

    def forward(self, query: str) -> Prediction:
        passages, indices, scores = self._search(query)
        return Prediction(passages=passages, indices=indices, scores=scores)

"""KNN: the ``k`` training examples nearest to the given inputs, by embedding dot product.

As DSPy 3.4.1's: each training example's inputs are written ``key: value | key: value``
and embedded once; a query's keyword arguments are written the same way, and the
examples with the highest dot product come back, most similar first.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dspyq.core.example import Example


def _as_text(pairs: Any) -> str:
    return " | ".join(f"{key}: {value}" for key, value in pairs)


class KNN:
    """``KNN(k, trainset, vectorizer=Embedder(...))(**inputs)`` -> list of Examples."""

    def __init__(self, k: int, trainset: list[Example], vectorizer: Any) -> None:
        self.k = k
        self.trainset = trainset
        self.embedding = vectorizer
        # Like DSPy, an example without input keys fails here (TypeError).
        texts = [
            _as_text((key, value) for key, value in example.items() if key in example._input_keys)  # type: ignore[operator]
            for example in trainset
        ]
        self.trainset_vectors = self.embedding(texts).astype(np.float32)

    def __call__(self, **kwargs: Any) -> list[Example]:
        query = self.embedding([_as_text(kwargs.items())])
        scores = np.dot(self.trainset_vectors, query.T).squeeze()
        nearest = scores.argsort()[-self.k :][::-1]
        return [self.trainset[index] for index in nearest]

"""``dspyq.retrievers``: DSPy's ``dspy.retrievers`` names, so ``from dspy.retrievers import ...``
ports by changing the package name. The code lives in :mod:`dspyq.core`."""

from dspyq.core.embeddings import Embeddings, EmbeddingsWithScores
from dspyq.core.retrieve import Retrieve

__all__ = ["Embeddings", "EmbeddingsWithScores", "Retrieve"]

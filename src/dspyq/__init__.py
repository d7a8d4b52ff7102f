"""dspyq: DSPy's programming model, executed in-process or by distributed worker pools.

The public vocabulary is DSPy's: ``Signature``, ``InputField``, ``OutputField``,
``Predict``, ``ChainOfThought``, ``Example``, ``Prediction``, ``LM``, ``Evaluate``...
"""

from typing import TYPE_CHECKING, Any

from dspyq import metrics
from dspyq.adapters import Adapter, ChatAdapter, JSONAdapter
from dspyq.core.chain_of_thought import ChainOfThought
from dspyq.core.context import bind_context, configure, context, current
from dspyq.core.example import Completions, Example, Prediction
from dspyq.core.module import Module
from dspyq.core.multihop import MultiHopQA
from dspyq.core.predict import Predict
from dspyq.core.react import ReAct, Tool
from dspyq.core.refine import BestOfN, Refine
from dspyq.core.signature import (
    InputField,
    OutputField,
    Signature,
    ensure_signature,
    infer_prefix,
    make_signature,
)
from dspyq.core.types import History
from dspyq.errors import (
    AdapterParseError,
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    ConfigurationError,
    ContextWindowExceededError,
    DspyqError,
    InputError,
    ProviderError,
    ProviderUnavailableError,
    QuotaExceededError,
    RateLimitedError,
    RateLimitExceededError,
    SignatureError,
    StateError,
)
from dspyq.lm import LM, inspect_history
from dspyq.metrics import answer_exact_match, answer_passage_match
from dspyq.optimize.bootstrap import BootstrapFewShot
from dspyq.optimize.copro import COPRO
from dspyq.optimize.evaluate import Evaluate, EvaluationResult
from dspyq.optimize.labeled import LabeledFewShot
from dspyq.optimize.mipro import MIPROv2
from dspyq.optimize.random_search import BootstrapFewShotWithRandomSearch
from dspyq.optimize.teleprompter import Teleprompter

if TYPE_CHECKING:
    from dspyq.api_client import Client, Job
    from dspyq.api_client.runs import Run
    from dspyq.api_client.stream import StreamChunk

__version__ = "0.1.0"

# The client pulls in Celery; load it on first use so in-process programs never do.
_LAZY = {
    "Client": "dspyq.api_client",
    "Job": "dspyq.api_client",
    "Run": "dspyq.api_client.runs",
    "StreamChunk": "dspyq.api_client.stream",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dspyq' has no attribute {name!r}")


__all__ = [
    "COPRO",
    "LM",
    "Adapter",
    "AdapterParseError",
    "AuthenticationError",
    "BadRequestError",
    "BestOfN",
    "BootstrapFewShot",
    "BootstrapFewShotWithRandomSearch",
    "ChainOfThought",
    "ChatAdapter",
    "CircuitOpenError",
    "Client",
    "Completions",
    "ConfigurationError",
    "ContextWindowExceededError",
    "DspyqError",
    "Evaluate",
    "EvaluationResult",
    "Example",
    "History",
    "InputError",
    "InputField",
    "JSONAdapter",
    "Job",
    "LabeledFewShot",
    "MIPROv2",
    "Module",
    "MultiHopQA",
    "OutputField",
    "Predict",
    "Prediction",
    "ProviderError",
    "ProviderUnavailableError",
    "QuotaExceededError",
    "RateLimitExceededError",
    "RateLimitedError",
    "ReAct",
    "Refine",
    "Run",
    "Signature",
    "SignatureError",
    "StateError",
    "StreamChunk",
    "Teleprompter",
    "Tool",
    "__version__",
    "answer_exact_match",
    "answer_passage_match",
    "bind_context",
    "configure",
    "context",
    "current",
    "ensure_signature",
    "infer_prefix",
    "inspect_history",
    "make_signature",
    "metrics",
]

"""dspyq: DSPy's programming model, executed in-process or by distributed worker pools.

The public vocabulary is DSPy's: ``Signature``, ``InputField``, ``OutputField``,
``Predict``, ``ChainOfThought``, ``Example``, ``Prediction``, ``LM``, ``Evaluate``...

Every name is imported on first use (PEP 562), so ``import dspyq.api_client`` (which
runs this file first) does not pay for the modules, optimizers and LM clients.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dspyq.masking import install_log_masking

install_log_masking()  # no secret in any log record of a process that uses dspyq

if TYPE_CHECKING:
    from dspyq import metrics
    from dspyq.adapters import Adapter, ChatAdapter, JSONAdapter, TwoStepAdapter, XMLAdapter
    from dspyq.api_client import Client, Job
    from dspyq.api_client.runs import Run
    from dspyq.api_client.stream import StreamChunk
    from dspyq.core.aggregation import majority
    from dspyq.core.chain_of_thought import ChainOfThought
    from dspyq.core.code_act import CodeAct
    from dspyq.core.context import bind_context, configure, context, current
    from dspyq.core.custom_types import Type
    from dspyq.core.embeddings import Embeddings
    from dspyq.core.example import Completions, Example, Prediction
    from dspyq.core.file_type import File
    from dspyq.core.knn import KNN
    from dspyq.core.logging_switch import disable_logging, enable_logging
    from dspyq.core.media import Audio, Image
    from dspyq.core.module import Module
    from dspyq.core.module import Module as BaseModule
    from dspyq.core.multi_chain import MultiChainComparison
    from dspyq.core.multihop import MultiHopQA
    from dspyq.core.parallel import Parallel
    from dspyq.core.predict import Predict
    from dspyq.core.program_of_thought import ProgramOfThought
    from dspyq.core.react import ReAct, Tool
    from dspyq.core.refine import BestOfN, Refine
    from dspyq.core.retrieve import Retrieve
    from dspyq.core.saving import load
    from dspyq.core.signature import (
        InputField,
        OutputField,
        Signature,
        SignatureMeta,
        ensure_signature,
        infer_prefix,
        make_signature,
    )
    from dspyq.core.signature_compose import adapt_signature, compose
    from dspyq.core.streaming import streamify
    from dspyq.core.sync_async import asyncify, syncify
    from dspyq.core.text_types import Code, Reasoning, ToolCalls
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
        PrivacyViolationError,
        ProviderError,
        ProviderUnavailableError,
        QuotaExceededError,
        RateLimitedError,
        RateLimitExceededError,
        SignatureError,
        StateError,
    )
    from dspyq.interpreter import (
        CodeExecutionError,
        CodeInterpreterError,
        FinalOutput,
        PythonInterpreter,
    )
    from dspyq.lm import LM, inspect_history
    from dspyq.lm.base_lm import BaseLM
    from dspyq.lm.cache import configure_cache
    from dspyq.lm.colbert import ColBERTv2
    from dspyq.lm.embedder import Embedder
    from dspyq.lm.usage import track_usage
    from dspyq.lm_errors import (
        DSPyError,
        LMAuthError,
        LMBillingError,
        LMCollectionLimitError,
        LMConfigurationError,
        LMError,
        LMInvalidRequestError,
        LMLockTimeoutError,
        LMNotConfiguredError,
        LMProviderError,
        LMRateLimitError,
        LMServerError,
        LMStreamAssemblyError,
        LMTimeoutError,
        LMTransportError,
        LMUnexpectedError,
        LMUnsupportedFeatureError,
        LMUnsupportedModelError,
        is_retryable_lm_error,
    )
    from dspyq.metrics import answer_exact_match, answer_passage_match
    from dspyq.optimize.adaptive import AdaptiveOptimizer
    from dspyq.optimize.auto_evaluation import SemanticF1
    from dspyq.optimize.better_together import BetterTogether
    from dspyq.optimize.bootstrap import BootstrapFewShot
    from dspyq.optimize.bootstrap_finetune import BootstrapFinetune
    from dspyq.optimize.copro import COPRO
    from dspyq.optimize.ensemble import Ensemble
    from dspyq.optimize.evaluate import Evaluate, EvaluationResult
    from dspyq.optimize.gepa import GEPA
    from dspyq.optimize.infer_rules import InferRules
    from dspyq.optimize.knn_fewshot import KNNFewShot
    from dspyq.optimize.labeled import LabeledFewShot
    from dspyq.optimize.mipro import MIPROv2
    from dspyq.optimize.optuna_fewshot import BootstrapFewShotWithOptuna
    from dspyq.optimize.random_search import BootstrapFewShotWithRandomSearch
    from dspyq.optimize.simba import SIMBA
    from dspyq.optimize.teleprompter import Teleprompter
    from dspyq.teleprompt import BootstrapRS

__version__ = "0.1.0"

# Where each public name lives: ``dspyq.X`` imports the module on first use.
_NAMES_BY_MODULE = {
    "dspyq.adapters": ("Adapter", "ChatAdapter", "JSONAdapter", "TwoStepAdapter", "XMLAdapter"),
    "dspyq.api_client": ("Client", "Job"),
    "dspyq.api_client.runs": ("Run",),
    "dspyq.api_client.stream": ("StreamChunk",),
    "dspyq.core.aggregation": ("majority",),
    "dspyq.core.chain_of_thought": ("ChainOfThought",),
    "dspyq.core.parallel": ("Parallel",),
    "dspyq.core.sync_async": ("asyncify", "syncify"),
    "dspyq.core.streaming": ("streamify",),
    "dspyq.core.signature_compose": ("adapt_signature", "compose"),
    "dspyq.core.saving": ("load",),
    "dspyq.core.logging_switch": ("disable_logging", "enable_logging"),
    "dspyq.lm.cache": ("configure_cache",),
    "dspyq.lm.usage": ("track_usage",),
    "dspyq.core.context": ("bind_context", "configure", "context", "current"),
    "dspyq.core.example": ("Completions", "Example", "Prediction"),
    "dspyq.core.knn": ("KNN",),
    "dspyq.core.code_act": ("CodeAct",),
    "dspyq.core.embeddings": ("Embeddings",),
    "dspyq.core.retrieve": ("Retrieve",),
    "dspyq.core.module": ("Module",),
    "dspyq.core.multi_chain": ("MultiChainComparison",),
    "dspyq.core.multihop": ("MultiHopQA",),
    "dspyq.core.predict": ("Predict",),
    "dspyq.core.program_of_thought": ("ProgramOfThought",),
    "dspyq.interpreter": (
        "CodeExecutionError",
        "CodeInterpreterError",
        "FinalOutput",
        "PythonInterpreter",
    ),
    "dspyq.core.react": ("ReAct", "Tool"),
    "dspyq.core.refine": ("BestOfN", "Refine"),
    "dspyq.core.signature": (
        "InputField",
        "OutputField",
        "Signature",
        "ensure_signature",
        "infer_prefix",
        "make_signature",
        "SignatureMeta",
    ),
    "dspyq.core.custom_types": ("Type",),
    "dspyq.core.file_type": ("File",),
    "dspyq.core.media": ("Audio", "Image"),
    "dspyq.core.text_types": ("Code", "Reasoning", "ToolCalls"),
    "dspyq.core.types": ("History",),
    "dspyq.errors": (
        "AdapterParseError",
        "AuthenticationError",
        "BadRequestError",
        "CircuitOpenError",
        "PrivacyViolationError",
        "ConfigurationError",
        "ContextWindowExceededError",
        "DspyqError",
        "InputError",
        "ProviderError",
        "ProviderUnavailableError",
        "QuotaExceededError",
        "RateLimitedError",
        "RateLimitExceededError",
        "SignatureError",
        "StateError",
    ),
    "dspyq.lm": ("LM", "inspect_history"),
    "dspyq.lm_errors": (
        "DSPyError",
        "LMAuthError",
        "LMBillingError",
        "LMCollectionLimitError",
        "LMConfigurationError",
        "LMError",
        "LMInvalidRequestError",
        "LMLockTimeoutError",
        "LMNotConfiguredError",
        "LMProviderError",
        "LMRateLimitError",
        "LMServerError",
        "LMStreamAssemblyError",
        "LMTimeoutError",
        "LMTransportError",
        "LMUnexpectedError",
        "LMUnsupportedFeatureError",
        "LMUnsupportedModelError",
        "is_retryable_lm_error",
    ),
    "dspyq.lm.base_lm": ("BaseLM",),
    "dspyq.metrics": ("answer_exact_match", "answer_passage_match"),
    "dspyq.optimize.adaptive": ("AdaptiveOptimizer",),
    "dspyq.optimize.better_together": ("BetterTogether",),
    "dspyq.optimize.bootstrap": ("BootstrapFewShot",),
    "dspyq.optimize.bootstrap_finetune": ("BootstrapFinetune",),
    "dspyq.optimize.copro": ("COPRO",),
    "dspyq.lm.colbert": ("ColBERTv2",),
    "dspyq.lm.embedder": ("Embedder",),
    "dspyq.optimize.ensemble": ("Ensemble",),
    "dspyq.optimize.evaluate": ("Evaluate", "EvaluationResult"),
    "dspyq.optimize.gepa": ("GEPA",),
    "dspyq.optimize.infer_rules": ("InferRules",),
    "dspyq.optimize.knn_fewshot": ("KNNFewShot",),
    "dspyq.optimize.labeled": ("LabeledFewShot",),
    "dspyq.optimize.mipro": ("MIPROv2",),
    "dspyq.optimize.optuna_fewshot": ("BootstrapFewShotWithOptuna",),
    "dspyq.optimize.random_search": ("BootstrapFewShotWithRandomSearch",),
    "dspyq.optimize.simba": ("SIMBA",),
    "dspyq.optimize.auto_evaluation": ("SemanticF1",),
    "dspyq.teleprompt": ("BootstrapRS",),
    "dspyq.optimize.teleprompter": ("Teleprompter",),
}
_MODULE_OF = {name: module for module, names in _NAMES_BY_MODULE.items() for name in names}

# Subpackages reachable as attributes after a bare ``import dspyq``, as when this file
# imported them eagerly. ``metrics`` is both one of them and a public name.
_SUBMODULES = frozenset(
    {
        "adapters",
        "api_client",
        "cli",
        "core",
        "errors",
        "evaluate",
        "events",
        "lm",
        "lm_errors",
        "metrics",
        "optimize",
        "resilience",
        "retrievers",
        "settings",
        "settings_live",
        "store",
        "streaming",
        "tasks",
        "teleprompt",
        "telemetry",
        "testing",
        "utils",
        "workers",
    }
)


def __getattr__(name: str) -> Any:
    if name == "BaseModule":  # DSPy's base of Module; here Module is the base
        return __getattr__("Module")
    module = _MODULE_OF.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | _SUBMODULES)


__all__ = [
    "COPRO",
    "GEPA",
    "KNN",
    "LM",
    "SIMBA",
    "Adapter",
    "AdapterParseError",
    "AdaptiveOptimizer",
    "Audio",
    "AuthenticationError",
    "BadRequestError",
    "BaseLM",
    "BaseModule",
    "BestOfN",
    "BetterTogether",
    "BootstrapFewShot",
    "BootstrapFewShotWithOptuna",
    "BootstrapFewShotWithRandomSearch",
    "BootstrapFinetune",
    "BootstrapRS",
    "ChainOfThought",
    "ChatAdapter",
    "CircuitOpenError",
    "Client",
    "Code",
    "CodeAct",
    "CodeExecutionError",
    "CodeInterpreterError",
    "ColBERTv2",
    "Completions",
    "ConfigurationError",
    "ContextWindowExceededError",
    "DSPyError",
    "DspyqError",
    "Embedder",
    "Embeddings",
    "Ensemble",
    "Evaluate",
    "EvaluationResult",
    "Example",
    "File",
    "FinalOutput",
    "History",
    "Image",
    "InferRules",
    "InputError",
    "InputField",
    "JSONAdapter",
    "Job",
    "KNNFewShot",
    "LMAuthError",
    "LMBillingError",
    "LMCollectionLimitError",
    "LMConfigurationError",
    "LMError",
    "LMInvalidRequestError",
    "LMLockTimeoutError",
    "LMNotConfiguredError",
    "LMProviderError",
    "LMRateLimitError",
    "LMServerError",
    "LMStreamAssemblyError",
    "LMTimeoutError",
    "LMTransportError",
    "LMUnexpectedError",
    "LMUnsupportedFeatureError",
    "LMUnsupportedModelError",
    "LabeledFewShot",
    "MIPROv2",
    "Module",
    "MultiChainComparison",
    "MultiHopQA",
    "OutputField",
    "Parallel",
    "Predict",
    "Prediction",
    "PrivacyViolationError",
    "ProgramOfThought",
    "ProviderError",
    "ProviderUnavailableError",
    "PythonInterpreter",
    "QuotaExceededError",
    "RateLimitExceededError",
    "RateLimitedError",
    "ReAct",
    "Reasoning",
    "Refine",
    "Retrieve",
    "Run",
    "SemanticF1",
    "Signature",
    "SignatureError",
    "SignatureMeta",
    "StateError",
    "StreamChunk",
    "Teleprompter",
    "Tool",
    "ToolCalls",
    "TwoStepAdapter",
    "Type",
    "XMLAdapter",
    "__version__",
    "adapt_signature",
    "answer_exact_match",
    "answer_passage_match",
    "asyncify",
    "bind_context",
    "compose",
    "configure",
    "configure_cache",
    "context",
    "current",
    "disable_logging",
    "enable_logging",
    "ensure_signature",
    "infer_prefix",
    "inspect_history",
    "is_retryable_lm_error",
    "load",
    "majority",
    "make_signature",
    "metrics",
    "streamify",
    "syncify",
    "track_usage",
]

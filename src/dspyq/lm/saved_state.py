"""An LM's saved form, the one DSPy writes (``dspy.clients.lm.LM``), both ways.

The saved form never holds the key or the endpoint; one found in a state is dropped on
load unless the caller allows it, so a loaded program cannot redirect calls.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from dspyq.errors import ConfigurationError

__all__ = ["lm_args_from_state", "lm_state"]

# Keys of DSPy's saved LM form that describe DSPy internals, not our LM's options.
_DSPY_STATE_ONLY = frozenset({"_dspy_lm_class", "engine", "model_type"})
_UNSAFE_STATE = frozenset({"api_base", "base_url", "api_key", "model_list"})


def lm_state(
    model: str, model_type: str, cache: bool, num_retries: int, options: Mapping[str, Any]
) -> dict[str, Any]:
    """The saved form of an LM with these settings and default request options."""
    return {
        "_dspy_lm_class": "dspy.clients.lm.LM",
        "model": model,
        "model_type": model_type,
        "cache": cache,
        "num_retries": num_retries,
        **copy.deepcopy(dict(options)),
        "engine": "litellm",
        "finetuning_model": None,
        "launch_kwargs": {},
        "train_kwargs": {},
    }


def lm_args_from_state(state: Mapping[str, Any], *, allow_unsafe_lm_state: bool) -> dict[str, Any]:
    """The LM constructor's arguments for a saved state (ours or DSPy's)."""
    args = {k: v for k, v in state.items() if k not in _DSPY_STATE_ONLY}
    if not allow_unsafe_lm_state:
        for name in _UNSAFE_STATE:
            args.pop(name, None)
    if "model" not in args:
        raise ConfigurationError("saved LM state has no 'model'", context={"keys": sorted(state)})
    return args

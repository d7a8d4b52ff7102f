"""DSPy's reaction to an answer cut at ``max_tokens``: a warning, and nothing more.

DSPy 3.4.1 logs a warning when a fresh answer (not a cache hit) stopped at the token
limit (finish reason ``length``; Anthropic's ``max_tokens`` is read as the same), and
neither raises nor retries: the adapter parses what the cut answer holds. dspyq does
the same, and keeps the finish reason in the history entry.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from dspyq.lm.request import LMResponse

logger = logging.getLogger("dspyq.lm")

TRUNCATED = frozenset({"length", "max_tokens"})


def is_truncated(response: LMResponse) -> bool:
    return any(reason in TRUNCATED for reason in response.finish_reasons)


def warn_if_truncated(response: LMResponse, params: Mapping[str, Any]) -> None:
    """Log DSPy's truncation warning when any choice stopped at the token limit."""
    if not is_truncated(response):
        return
    limit = params.get("max_tokens", params.get("max_completion_tokens"))
    logger.warning(
        "LM response was truncated at max_tokens=%s; increase max_tokens or inspect history.",
        limit,
    )

"""LM clients: the :class:`LM` facade, its providers, cache, prices and call history."""

from dspyq.lm.cache import Cache, LRUCache, clear_cache, default_cache, set_default_cache
from dspyq.lm.history import clear_history, global_history, inspect_history
from dspyq.lm.lm import LM
from dspyq.lm.pricing import Price, PriceTable, set_prices
from dspyq.lm.providers import register_provider
from dspyq.lm.request import LMChunk, LMRequest, LMResponse, Usage

__all__ = [
    "LM",
    "Cache",
    "LMChunk",
    "LMRequest",
    "LMResponse",
    "LRUCache",
    "Price",
    "PriceTable",
    "Usage",
    "clear_cache",
    "clear_history",
    "default_cache",
    "global_history",
    "inspect_history",
    "register_provider",
    "set_default_cache",
    "set_prices",
]

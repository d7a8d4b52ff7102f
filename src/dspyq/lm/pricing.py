"""USD prices per million tokens, to put a cost on every LM call.

The built-in table holds list prices of common OpenAI and Anthropic models at the
time of writing; prices change, so override them process-wide with
:func:`set_prices` or per LM with ``LM(prices=...)``. A model is looked up by its full
name (``openai/gpt-4o-mini``), then its bare name, then the longest known prefix of
the bare name (so dated snapshots such as ``gpt-4o-mini-2024-07-18`` find their
family). A model with no price costs 0.0 and the history entry says so.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dspyq.errors import ConfigurationError
from dspyq.lm.request import Usage


@dataclass(frozen=True)
class Price:
    """USD per million input (prompt) and output (completion) tokens."""

    input_per_million: float
    output_per_million: float

    def cost(self, usage: Usage) -> float:
        return (
            usage.prompt_tokens * self.input_per_million
            + usage.completion_tokens * self.output_per_million
        ) / 1_000_000

    @classmethod
    def coerce(cls, value: Any) -> Price:
        """Accept a Price, a ``(input, output)`` pair, or a dict with ``input``/``output``
        (or ``input_per_million``/``output_per_million``) keys."""
        if isinstance(value, Price):
            return value
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return cls(float(value[0]), float(value[1]))
        if isinstance(value, Mapping):
            try:
                inp = value.get("input_per_million", value.get("input"))
                out = value.get("output_per_million", value.get("output"))
                return cls(float(inp), float(out))
            except (TypeError, ValueError):
                pass
        raise ConfigurationError(
            f"a price must be (input, output) USD per million tokens, got {value!r}"
        )


DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-4-turbo": Price(10.00, 30.00),
    "gpt-3.5-turbo": Price(0.50, 1.50),
    "gpt-5": Price(1.25, 10.00),
    "gpt-5-mini": Price(0.25, 2.00),
    "gpt-5-nano": Price(0.05, 0.40),
    "o1": Price(15.00, 60.00),
    "o1-mini": Price(1.10, 4.40),
    "o3": Price(2.00, 8.00),
    "o3-mini": Price(1.10, 4.40),
    "o4-mini": Price(1.10, 4.40),
    "claude-3-haiku": Price(0.25, 1.25),
    "claude-3-opus": Price(15.00, 75.00),
    "claude-3-5-haiku": Price(0.80, 4.00),
    "claude-3-5-sonnet": Price(3.00, 15.00),
    "claude-3-7-sonnet": Price(3.00, 15.00),
    "claude-sonnet-4": Price(3.00, 15.00),
    "claude-opus-4": Price(15.00, 75.00),
    "claude-haiku-4-5": Price(1.00, 5.00),
}


class PriceTable:
    """A model -> :class:`Price` table, optionally layered over a fallback table."""

    def __init__(
        self, prices: Mapping[str, Any] | None = None, fallback: PriceTable | None = None
    ) -> None:
        self._prices: dict[str, Price] = {}
        self._fallback = fallback
        self._lock = threading.Lock()
        if prices:
            self.update(prices)

    def update(self, prices: Mapping[str, Any]) -> None:
        """Add or replace prices (values as accepted by :meth:`Price.coerce`)."""
        coerced = {name: Price.coerce(value) for name, value in prices.items()}
        with self._lock:
            self._prices.update(coerced)

    def _snapshot(self) -> dict[str, Price]:
        with self._lock:
            return dict(self._prices)

    def _layers(self) -> list[dict[str, Price]]:
        layers = [self._snapshot()]
        if self._fallback is not None:
            layers.extend(self._fallback._layers())
        return layers

    def lookup(self, model: str) -> Price | None:
        """The price of ``model``, or None when no layer knows it.

        Exact names win over prefixes in every layer, so an override for ``gpt-4o``
        does not shadow the built-in price of ``gpt-4o-mini``.
        """
        bare = model.split("/", 1)[1] if "/" in model else model
        layers = self._layers()
        for prices in layers:
            for name in (model, bare):
                if name in prices:
                    return prices[name]
        for prices in layers:
            matches = [name for name in prices if bare.startswith(name)]
            if matches:
                return prices[max(matches, key=len)]
        return None


_GLOBAL_PRICES = PriceTable(DEFAULT_PRICES)


def price_table() -> PriceTable:
    """The process-wide table every LM falls back to."""
    return _GLOBAL_PRICES


def set_prices(prices: Mapping[str, Any]) -> None:
    """Add or override process-wide prices, e.g. ``set_prices({"local/llama3": (0, 0)})``."""
    _GLOBAL_PRICES.update(prices)

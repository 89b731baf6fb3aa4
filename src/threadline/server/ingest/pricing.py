"""Model prices (USD per million tokens) for spans that report tokens but no cost.

Prices are list prices of common hosted models; a span's own ``llm.cost.*`` always wins.
Model names are matched exactly first, then by the longest known prefix (so dated snapshots such
as ``gpt-4o-2024-08-06`` find ``gpt-4o``).
"""

from __future__ import annotations

import functools
from typing import Final

#: model prefix → (input USD / 1M tokens, output USD / 1M tokens)
PRICES: Final[dict[str, tuple[float, float]]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4": (30.00, 60.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5": (1.25, 10.00),
    "o1-mini": (1.10, 4.40),
    "o1": (15.00, 60.00),
    "o3-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    "o4-mini": (1.10, 4.40),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-3-haiku": (0.25, 1.25),
    "claude-3-opus": (15.00, 75.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-opus-4": (15.00, 75.00),
    "claude-haiku-4": (1.00, 5.00),
    "anthropic.claude-3-haiku": (0.25, 1.25),
    "anthropic.claude-3-5-sonnet": (3.00, 15.00),
    "anthropic.claude-3-sonnet": (3.00, 15.00),
    "mistral-large": (2.00, 6.00),
    "mistral-medium": (0.40, 2.00),
    "mistral-small": (0.10, 0.30),
    "open-mistral-nemo": (0.15, 0.15),
    "gemini-1.5-flash": (0.075, 0.30),
    "gemini-1.5-pro": (1.25, 5.00),
    "gemini-2.0-flash": (0.10, 0.40),
    "gemini-2.5-flash": (0.30, 2.50),
    "gemini-2.5-pro": (1.25, 10.00),
}
_BY_LENGTH = sorted(PRICES, key=len, reverse=True)


@functools.lru_cache(maxsize=4096)
def price_for(model: str | None) -> tuple[float, float] | None:
    """The (input, output) price per million tokens of ``model``, or ``None`` when unknown.

    Cached: a deployment uses a handful of model names, and the prefix search runs on every
    LLM span otherwise.
    """
    if not model:
        return None
    name = model.lower().rsplit("/", 1)[-1]
    if name in PRICES:
        return PRICES[name]
    for prefix in _BY_LENGTH:
        if name.startswith(prefix):
            return PRICES[prefix]
    return None


def cost_usd(model: str | None, prompt_tokens: int, completion_tokens: int) -> float:
    """Estimated cost in USD of one call (0.0 for unknown models)."""
    price = price_for(model)
    if price is None:
        return 0.0
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000

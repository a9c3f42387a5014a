"""Prices per million tokens, used when the provider does not report a call's cost."""

from __future__ import annotations

# (prompt $/Mtok, completion $/Mtok). OpenRouter reports cost itself; this is the fallback.
PRICES: dict[str, tuple[float, float]] = {
    "openai/gpt-4o-mini": (0.15, 0.60),
    "openai/gpt-4o": (2.50, 10.00),
    "openai/gpt-4.1-mini": (0.40, 1.60),
    "openai/gpt-4.1": (2.00, 8.00),
    "anthropic/claude-3.5-haiku": (0.80, 4.00),
    "anthropic/claude-sonnet-4": (3.00, 15.00),
    "google/gemini-2.0-flash-001": (0.10, 0.40),
    "meta-llama/llama-3.1-8b-instruct": (0.02, 0.05),
    "deepseek/deepseek-chat": (0.30, 1.20),
}
DEFAULT_PRICE = (1.0, 4.0)
# The largest completion one call may return, reserved before a call is made.
DEFAULT_MAX_COMPLETION_TOKENS = 4096


def price_of(model: str) -> tuple[float, float]:
    base = model.split(":", 1)[0]
    return PRICES.get(base, PRICES.get(base.split("/")[-1], DEFAULT_PRICE))


# What a prompt token read from the provider's cache costs, as a share of a fresh one: OpenAI
# bills cached input at half price (a quarter for the 4.1 family), Anthropic at a tenth.
CACHED_SHARE: dict[str, float] = {"openai/gpt-4.1": 0.25, "openai/gpt-4.1-mini": 0.25,
                                  "anthropic/": 0.1}
DEFAULT_CACHED_SHARE = 0.5


def cached_share(model: str) -> float:
    base = model.split(":", 1)[0]
    if base in CACHED_SHARE:
        return CACHED_SHARE[base]
    return next((v for k, v in CACHED_SHARE.items() if k.endswith("/") and base.startswith(k)),
                DEFAULT_CACHED_SHARE)


def cost_for(model: str, prompt_tokens: int, completion_tokens: int, *, cached: int = 0
             ) -> float:
    """A call's cost from the price list; `cached` of the prompt tokens at the cached rate."""
    prompt, completion = price_of(model)
    cached = min(max(cached, 0), prompt_tokens)
    fresh = prompt_tokens - cached
    return (fresh * prompt + cached * prompt * cached_share(model)
            + completion_tokens * completion) / 1_000_000

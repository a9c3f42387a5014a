"""The LLM client: AsyncOpenAI against any OpenAI-compatible endpoint, with retries and fallback.

    LLMError                  every model in the chain failed; carries the provider's last error
    Completion                one answer: the message, usage, cost, which model answered

`chat()` tries the primary model with backoff on 429/5xx/connection errors, then each fallback
model in turn; every retry and switch is reported through `on_event`. What the client last saw
of the provider (`seen()`) is kept per process; app/run/provider_state.py makes it durable for
/health. A failure names the provider's URL and, without a key, the variables that set one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import openai
from openai import AsyncOpenAI

from app.core.config import Settings
from app.core.redact import redact
from app.models import utcnow
from app.run.pricing import cost_for

OnEvent = Callable[[str, dict[str, Any]], Awaitable[None]]
RETRYABLE = (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError)


class LLMError(Exception):
    """No model in the chain answered; the message is the provider's last error."""


@dataclass
class Completion:
    message: dict[str, Any]
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def content(self) -> str:
        return self.message.get("content") or ""


@dataclass
class ProviderSeen:
    """What this process's client last saw of one provider; `unsaved` until persisted."""

    last_error: str | None = None
    last_error_at: datetime | None = None
    last_ok_at: datetime | None = None
    unsaved: bool = False


KEY_VARIABLES = "TASKBENCH_LLM_API_KEY (or OPENROUTER_API_KEY / OPENAI_API_KEY)"
_clients: dict[tuple[str, str, float], AsyncOpenAI] = {}
_seen: dict[str, ProviderSeen] = {}


def seen(base_url: str) -> ProviderSeen:
    """This process's record of the provider at `base_url`."""
    return _seen.setdefault(base_url, ProviderSeen())


def _note(settings: Settings, error: str | None) -> None:
    record = seen(settings.llm_base_url)
    if error is not None:
        record.last_error, record.last_error_at, record.unsaved = error, utcnow(), True
    elif record.last_ok_at is None or (
        record.last_error_at is not None and record.last_error_at >= record.last_ok_at
    ):  # only a change of state is news: the first answer, or the first after an error
        record.last_ok_at, record.unsaved = utcnow(), True


def explain(settings: Settings, error: str) -> str:
    """The provider's error with where it came from and, when no key is set, how to set one."""
    where = f"{error} (provider {settings.llm_base_url})"
    if not settings.llm_api_key:
        return (f"{where}; no model key is set: set {KEY_VARIABLES}, and "
                "TASKBENCH_LLM_BASE_URL for a provider other than OpenRouter")
    if error.startswith(("401", "403")):
        return f"{where}; the provider refused the key in {KEY_VARIABLES}"
    return where


def client_for(settings: Settings) -> AsyncOpenAI:
    """One AsyncOpenAI per (endpoint, key, timeout) in this process, its own retries off."""
    key = (settings.llm_base_url, settings.llm_api_key, settings.llm_timeout_s)
    if key not in _clients:
        _clients[key] = AsyncOpenAI(
            base_url=settings.llm_base_url,
            api_key=settings.llm_api_key or "not-set",
            timeout=settings.llm_timeout_s,
            max_retries=0,
        )
    return _clients[key]


def reset_clients() -> None:
    _clients.clear()
    _seen.clear()


def _to_completion(resp: Any, model: str, settings: Settings) -> Completion:
    choice = resp.choices[0]
    msg = choice.message
    # A reply is hostile input too: a secret in it must not reach the workspace (through tool
    # arguments), the event log, or the next prompt (the conversation echoes the reply).
    tool_calls = [
        {
            "id": tc.id,
            "type": "function",
            "function": {"name": tc.function.name,
                         "arguments": redact(tc.function.arguments or "{}")},
        }
        for tc in (msg.tool_calls or [])
        if getattr(tc, "function", None) is not None
    ]
    message: dict[str, Any] = {"role": "assistant", "content": redact(msg.content or "")}
    if tool_calls:
        message["tool_calls"] = tool_calls
    usage = resp.usage
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0) if usage else 0
    completion = int(getattr(usage, "completion_tokens", 0) or 0) if usage else 0
    reported = getattr(usage, "cost", None) if usage else None
    if reported is None and usage is not None and usage.model_extra:
        reported = usage.model_extra.get("cost")
    cost = float(reported) if reported is not None else cost_for(model, prompt, completion)
    return Completion(message, resp.model or model, prompt, completion, cost, tool_calls)


async def chat(
    settings: Settings,
    *,
    models: list[str],
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    max_tokens: int | None = None,
    response_format: dict[str, Any] | None = None,
    on_event: OnEvent | None = None,
) -> Completion:
    """Ask the first model that answers; raise LLMError when none does."""
    client = client_for(settings)
    last_error = "no model configured"
    for index, model in enumerate(models):
        if index > 0 and on_event:
            await on_event("llm_fallback", {"from": models[index - 1], "to": model,
                                            "error": last_error})
        for attempt in range(settings.llm_max_retries + 1):
            kwargs: dict[str, Any] = {"model": settings.provider_model(model),
                                      "messages": messages,
                                      "extra_body": {"usage": {"include": True}}}
            if tools:
                kwargs["tools"] = tools
            if max_tokens:
                kwargs["max_tokens"] = max_tokens
            if response_format:
                kwargs["response_format"] = response_format
            try:
                resp = await client.chat.completions.create(**kwargs)
                if not resp.choices:
                    raise LLMError(f"{model} returned no choices")
                _note(settings, None)
                return _to_completion(resp, model, settings)
            except RETRYABLE as exc:
                last_error = _describe(exc)
                _note(settings, last_error)
                if attempt >= settings.llm_max_retries:
                    break
                delay = _retry_after(exc) or settings.llm_retry_base_s * (2**attempt)
                if on_event:
                    await on_event("llm_retry", {"model": model, "attempt": attempt + 1,
                                                 "delay_s": round(delay, 3), "error": last_error})
                await asyncio.sleep(delay)
            except (openai.APIStatusError, openai.APIResponseValidationError, LLMError) as exc:
                last_error = _describe(exc)
                _note(settings, last_error)
                break
    raise LLMError(explain(settings, last_error))


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    text = str(exc).strip() or exc.__class__.__name__
    return f"{status}: {text}"[:1000] if status else text[:1000]


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    if response is None:
        return None
    value = response.headers.get("retry-after")
    try:
        return min(float(value), 30.0) if value else None
    except ValueError:
        return None

"""The LLM client: chat completions against any OpenAI-compatible endpoint, retries and fallback.

    LLMError                  no model answered; carries the provider's own last message
    └── ContextTooLong        the provider refused the prompt as longer than the model's window
    Completion                one answer: the message, usage, cost, which model answered

`chat()` asks the primary model, retrying with backoff what may pass (429, 5xx, connection
errors, a 200 carrying a transient `{"error"}`, an HTML page or broken JSON, no choices), then
each fallback model in turn; every retry and switch is reported through `on_event`. What no other
model can fix ends the chain at once: a 401 (the same key goes with every model) and a
context-length refusal (the caller condenses the conversation and asks again).

The request is posted as a plain JSON body over pooled HTTP (app.run.llm_http, on aiohttp: the
key, base URL, timeout and status errors), and the reply is read as plain JSON by
app.run.llm_reply, which copes with what real providers send. Provider-specific fields go only
where they are understood: `usage: {include: true}` and `provider` routing to OpenRouter alone;
`max_completion_tokens` instead of `max_tokens` for a model that refused the latter (remembered per
endpoint and model).
Model names go through the operator's map (TASKBENCH_LLM_MODEL_MAP, `settings.provider_model`).

What the client last saw of the provider (`seen()`) is kept per process; app/run/provider_state.py
makes it durable for /health. A failure names the provider's URL and, without a key, the
variables that set one.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from app.core.config import Settings
from app.core.redact import redact
from app.models import utcnow
from app.run import llm_http
from app.run.llm_http import Unreachable, close_clients, post_chat
from app.run.llm_reply import Completion, ProviderError, read_reply
from app.tools.registry import schemas_json

__all__ = ["Completion", "ContextTooLong", "LLMError", "chat", "close_clients", "reset_clients"]

OnEvent = Callable[[str, dict[str, Any]], Awaitable[None]]
_CONTEXT = re.compile(r"context[_ ]length|context window|maximum context|too many tokens|"
                      r"prompt is too long|input is too long|reduce the length", re.I)
_MAX_TOKENS_REFUSED = re.compile(r"max_completion_tokens|max_tokens.{0,60}(not supported|"
                                 r"unsupported|\buse\b)", re.I | re.S)


class LLMError(Exception):
    """No model in the chain answered; the message is the provider's last error."""


class ContextTooLong(LLMError):
    """The provider refused the request as longer than the model's context window."""


class _ModelFailed(Exception):
    """This model cannot answer this request; the next one in the chain may."""


@dataclass
class ProviderSeen:
    """What this process's client last saw of one provider; `unsaved` until persisted."""

    last_error: str | None = None
    last_error_at: datetime | None = None
    last_ok_at: datetime | None = None
    unsaved: bool = False


KEY_VARIABLES = "TASKBENCH_LLM_API_KEY (or OPENROUTER_API_KEY / OPENAI_API_KEY)"
_seen: dict[str, ProviderSeen] = {}
_use_completion_tokens: set[tuple[str, str]] = set()  # (endpoint, model) refusing max_tokens


def reset_clients() -> None:
    llm_http.reset_clients()
    _use_completion_tokens.clear()
    _seen.clear()


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


def is_openrouter(base_url: str) -> bool:
    host = urlsplit(base_url).hostname or ""
    return host == "openrouter.ai" or host.endswith(".openrouter.ai")


def request_body(
    settings: Settings, model: str, messages: list[dict[str, Any]], *,
    tools: list[dict[str, Any]] | None, max_tokens: int | None,
    response_format: dict[str, Any] | None, provider: dict[str, Any] | None,
) -> dict[str, Any]:
    """The JSON body of one chat-completions request to `model`."""
    if wants_cache_marks(settings, model):
        messages = with_cache_marks(messages)
    body: dict[str, Any] = {"model": settings.provider_model(model), "messages": messages}
    if tools:
        body["tools"] = tools
    if max_tokens:
        refuses = (settings.llm_base_url, model) in _use_completion_tokens
        body["max_completion_tokens" if refuses else "max_tokens"] = max_tokens
    if response_format:
        body["response_format"] = response_format
    if is_openrouter(settings.llm_base_url):
        body["usage"] = {"include": True}
        if provider:
            body["provider"] = provider
    return body


def body_json(body: dict[str, Any], messages_json: str | None = None) -> str:
    """`body` as JSON, with the tool schemas as serialised once per list (app.tools.registry)
    rather than ~9 KB of schemas worked out again for every call, and the messages as the
    caller serialised them already (`messages_json`, for the prompt's size) when given."""
    spliced = {}
    if body.get("messages") is not None and messages_json is not None:
        spliced["messages"] = messages_json
    if body.get("tools"):
        spliced["tools"] = schemas_json(body["tools"])
    if not spliced:
        return json.dumps(body, default=str)
    rest = json.dumps({k: v for k, v in body.items() if k not in spliced}, default=str)
    parts = [rest[1:-1]] if rest != "{}" else []
    parts += [f"{json.dumps(k)}: {v}" for k, v in spliced.items()]
    return "{" + ", ".join(parts) + "}"


CACHE_MARK = {"type": "ephemeral"}


def wants_cache_marks(settings: Settings, model: str) -> bool:
    """Whether requests to `model` carry cache breakpoints (TASKBENCH_LLM_PROMPT_CACHE)."""
    if settings.llm_prompt_cache == "off":
        return False
    if settings.llm_prompt_cache == "on":
        return True
    name = f"{model} {settings.provider_model(model)}".lower()
    return "anthropic/" in name or "claude" in name


def with_cache_marks(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A copy of `messages` with two cache breakpoints (Anthropic's `cache_control`, passed on
    by OpenRouter): the system prompt, which never changes, and the last message, so the next
    call reads everything up to here from the cache. The conversation itself is not changed."""
    marked = [dict(m) for m in messages]
    for index in {0, len(marked) - 1}:
        if index < 0 or index >= len(marked):
            continue
        message = marked[index]
        content = message.get("content")
        if isinstance(content, str) and content:
            message["content"] = [{"type": "text", "text": content, "cache_control": CACHE_MARK}]
        elif isinstance(content, list) and content and isinstance(content[-1], dict):
            message["content"] = [*content[:-1], {**content[-1], "cache_control": CACHE_MARK}]
    return marked


async def chat(
    settings: Settings,
    *,
    models: list[str],
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    max_tokens: int | None = None,
    response_format: dict[str, Any] | None = None,
    provider: dict[str, Any] | None = None,
    on_event: OnEvent | None = None,
    messages_json: str | None = None,
) -> Completion:
    """Ask the first model that answers; raise LLMError when none does. `messages_json`:
    `messages` as JSON when the caller has serialised them already (to size the prompt)."""
    last_error = "no model configured"
    for index, model in enumerate(models):
        if index > 0 and on_event:
            await on_event("llm_fallback", {"from": models[index - 1], "to": model,
                                            "error": last_error})
        try:
            return await _ask_model(settings, model, messages, tools=tools,
                                    max_tokens=max_tokens, response_format=response_format,
                                    provider=provider, on_event=on_event,
                                    messages_json=messages_json)
        except _ModelFailed as exc:
            last_error = str(exc)
        except LLMError as exc:  # the chain ends here (a 401, a context-length refusal)
            raise type(exc)(explain(settings, str(exc))) from exc
    raise LLMError(explain(settings, last_error))


async def _ask_model(
    settings: Settings, model: str, messages: list[dict[str, Any]], *,
    tools: list[dict[str, Any]] | None, max_tokens: int | None,
    response_format: dict[str, Any] | None, provider: dict[str, Any] | None,
    on_event: OnEvent | None, messages_json: str | None = None,
) -> Completion:
    """One model, with retries; raises _ModelFailed to move on, LLMError to stop the chain."""
    tool_names = {t["function"]["name"] for t in tools or [] if "function" in t}
    attempt = 0
    while True:
        body = request_body(settings, model, messages, tools=tools, max_tokens=max_tokens,
                            response_format=response_format, provider=provider)
        # the caller's JSON is of `messages` as given: not of a copy with cache marks
        ready = messages_json if body["messages"] is messages else None
        try:
            completion = await _post(settings, body, tool_names, ready)
            _note(settings, None)
            return completion
        except (Unreachable, ProviderError) as exc:
            failure: Exception = exc
        error = _describe(failure)
        _note(settings, error)
        if not _retryable(failure):
            _give_up(settings, model, failure, error)
            continue  # asked again with max_completion_tokens
        if attempt >= settings.llm_max_retries:
            raise _ModelFailed(error)
        delay = _retry_after(failure) or settings.llm_retry_base_s * (2**attempt)
        attempt += 1
        if on_event:
            await on_event("llm_retry", {"model": model, "attempt": attempt,
                                         "delay_s": round(delay, 3), "error": error})
        await asyncio.sleep(delay)


async def _post(settings: Settings, body: dict[str, Any], tool_names: set[str],
                messages_json: str | None = None) -> Completion:
    # serialised once, for the wire and for the size a usage estimate needs
    data = body_json(body, messages_json)
    raw = await post_chat(settings, data.encode())
    return read_reply(raw, model=body["model"], request_chars=len(data), tool_names=tool_names)


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, ProviderError):
        return exc.retryable
    return True  # no answer: connection errors and timeouts


def _give_up(settings: Settings, model: str, exc: Exception, error: str) -> None:
    """A refusal retrying will not change: end the chain, move on, or (once) ask differently."""
    status = getattr(exc, "status_code", None) or getattr(exc, "status", None)
    if status == 401:
        raise LLMError(f"{error} (the API key was refused; no fallback model is tried with it)")
    text = str(exc)
    if status in (400, 413, 422) and _CONTEXT.search(text):
        raise ContextTooLong(error)
    key = (settings.llm_base_url, model)
    if status == 400 and key not in _use_completion_tokens and _MAX_TOKENS_REFUSED.search(text):
        _use_completion_tokens.add(key)
        return
    raise _ModelFailed(error)


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    text = redact(" ".join(str(exc).split()) or exc.__class__.__name__)
    return f"{status}: {text}"[:1000] if status else text[:1000]


def _retry_after(exc: Exception) -> float | None:
    headers = getattr(exc, "headers", None)
    if headers is None:
        return None
    value = headers.get("retry-after")
    try:
        return min(float(value), 30.0) if value else None
    except ValueError:
        return None

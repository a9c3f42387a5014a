"""Reading a provider's chat-completion reply as it really comes, not as the spec draws it.

    ProviderError          not a usable answer; `retryable` says whether asking again may help
    read_reply(body, ...)  the raw HTTP body → Completion (message, tool calls, usage)

OpenAI-compatible providers differ in ways that used to crash a task:

- an HTTP 200 whose body is `{"error": {...}}` (OpenRouter on an upstream failure), an HTML page,
  broken JSON, or no `choices` at all → ProviderError carrying the provider's own message;
- `content` as a list of parts → their text joined; `reasoning` / `reasoning_content` → dropped,
  so it never goes back in the next request;
- tool-call `arguments` as an object, inside ```json fences, followed by text, or JSON-encoded
  twice → one JSON object string;
- a tool call with no `id`, or one another call of the reply has → one made up (never `null`
  echoed back);
- tool calls written as text in `content` (`<tool_call>{…}</tool_call>`, or a bare JSON object
  with `name` and `arguments`), as open models served without a tool parser answer → real calls,
  but only for tools that were offered;
- no `usage` → an estimate of about four characters a token (no tokenizer is needed, so it works
  offline), marked `usage_estimated` so the budget still counts it.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.core.redact import redact
from app.run.pricing import cost_for

# error codes in a 200 body that are worth asking again for (rate limits, upstream failures)
RETRYABLE_CODES = frozenset({408, 429, 500, 502, 503, 504, 520, 522, 524, 529})
CHARS_PER_TOKEN = 4
_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*(.*?)\s*```\s*$", re.S)
_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)


class ProviderError(Exception):
    """The provider answered, but not with a usable completion; the message is theirs."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class StatusError(ProviderError):
    """The provider answered with an HTTP error status; the message is its own words."""

    def __init__(self, message: str, *, status_code: int, headers: Mapping[str, str]) -> None:
        super().__init__(message, retryable=status_code in RETRYABLE_CODES, status=status_code)
        self.status_code = status_code
        self.headers = headers


def status_error(status_code: int, raw: bytes, headers: Mapping[str, str]) -> StatusError:
    """The error of a reply with status `status_code`: the provider's message from its
    `{"error": {...}}` body (with OpenRouter's upstream detail), or the start of its text."""
    text = raw.decode("utf-8", "replace")
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        message = str(error["message"])
        metadata = error.get("metadata")
        raw_detail = metadata.get("raw") if isinstance(metadata, dict) else None
        if raw_detail:
            message = f"{message} ({raw_detail})"
    elif isinstance(error, str) and error:
        message = error
    else:
        message = " ".join(text.split())[:300] or "no body"
    return StatusError(redact(message)[:1000], status_code=status_code, headers=headers)


@dataclass
class Completion:
    message: dict[str, Any]
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    usage_estimated: bool = False
    cached_tokens: int = 0  # of prompt_tokens, read from the provider's prompt cache

    @property
    def content(self) -> str:
        return self.message.get("content") or ""

    @property
    def truncated(self) -> bool:
        """The provider cut the answer at the output limit."""
        return self.finish_reason == "length"


def read_reply(
    raw: bytes | str, *, model: str, request_chars: int, tool_names: set[str]
) -> Completion:
    """Parse one reply body; raises ProviderError when it is not a completion."""
    body = _json_body(raw)
    if body.get("error"):
        raise _error_in_body(body["error"])
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ProviderError(f"{model} returned no choices", retryable=True)
    choice = choices[0]
    msg = choice.get("message") or {}
    if not isinstance(msg, dict):
        raise ProviderError(f"{model} returned a malformed message", retryable=True)
    content = _text_of(msg.get("content"))
    calls = _unique_ids([_tool_call(c) for c in (msg.get("tool_calls") or []) if _is_call(c)])
    if not calls and tool_names:
        content, calls = _calls_in_text(content, tool_names)
    # A reply is hostile input too: a secret in it must not reach the workspace (through tool
    # arguments), the event log, or the next prompt (the conversation echoes the reply).
    message: dict[str, Any] = {"role": "assistant", "content": redact(content)}
    if calls:
        message["tool_calls"] = calls
    answered_by = str(body.get("model") or model)
    completion = Completion(message, answered_by, tool_calls=calls,
                            finish_reason=choice.get("finish_reason"))
    _count_usage(completion, body.get("usage"), model, request_chars)
    return completion


def _json_body(raw: bytes | str) -> dict[str, Any]:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        shown = redact(" ".join(text.split())[:200]) or "an empty body"
        raise ProviderError(f"the provider's reply is not a JSON object: {shown}",
                            retryable=True)
    return body


def _error_in_body(error: Any) -> ProviderError:
    """`{"error": {...}}` in a 200: retry what looks transient, keep the provider's words."""
    if not isinstance(error, dict):
        return ProviderError(redact(str(error))[:1000], retryable=True)
    code = error.get("code") or error.get("status")
    message = str(error.get("message") or "unknown error")
    metadata = error.get("metadata")
    raw = metadata.get("raw") if isinstance(metadata, dict) else None
    if raw:
        message = f"{message} ({raw})"
    status = int(code) if isinstance(code, int | str) and str(code).isdigit() else None
    retryable = status is None or status in RETRYABLE_CODES
    shown = f"{status}: {message}" if status else message
    return ProviderError(redact(shown)[:1000], retryable=retryable, status=status)


def _text_of(content: Any) -> str:
    """Content as a string, whether it came as one or as a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") if isinstance(p, dict) else p for p in content]
        return "".join(p for p in parts if isinstance(p, str))
    return str(content)


def _is_call(call: Any) -> bool:
    return isinstance(call, dict) and isinstance(call.get("function"), dict) \
        and bool(call["function"].get("name"))


def _tool_call(call: dict[str, Any]) -> dict[str, Any]:
    fn = call["function"]
    return {
        "id": str(call.get("id") or "") or _new_id(),
        "type": "function",
        "function": {"name": str(fn["name"]), "arguments": redact(arguments_json(
            fn.get("arguments")))},
    }


def _unique_ids(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each call its own id: some servers number every reply's calls from zero, or repeat one."""
    seen: set[str] = set()
    for call in calls:
        if call["id"] in seen:
            call["id"] = _new_id()
        seen.add(call["id"])
    return calls


def _new_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def arguments_json(raw: Any) -> str:
    """Tool-call arguments as one JSON object string, recovered where a model wrapped them.

    Arguments that cannot be recovered are passed on as they came, so the model is told its
    JSON is broken (an observation) instead of having a guess run."""
    if raw is None or raw == "":
        return "{}"
    if isinstance(raw, dict):
        return json.dumps(raw)
    text = str(raw)
    fenced = _FENCE.match(text)
    candidate = fenced.group(1) if fenced else text.strip()
    try:
        value = json.loads(candidate)
    except json.JSONDecodeError:
        value = _leading_object(candidate)
    if isinstance(value, str):  # encoded twice
        value = _leading_object(value)
    return json.dumps(value) if isinstance(value, dict) else text


def _leading_object(text: str) -> Any:
    """The JSON object at the start of `text`, ignoring whatever follows it."""
    start = text.find("{")
    if start < 0:
        return None
    try:
        value, _end = json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError:
        return None
    return value


def _calls_in_text(content: str, tool_names: set[str]) -> tuple[str, list[dict[str, Any]]]:
    """Tool calls a model wrote into its content; returns (the rest of the text, the calls)."""
    tagged = _TAGGED.findall(content)
    candidates = tagged or [content]
    calls = []
    for candidate in candidates:
        fenced = _FENCE.match(candidate)
        value = _leading_object(fenced.group(1) if fenced else candidate)
        if not isinstance(value, dict):
            continue
        name = value.get("name")
        args = value.get("arguments", value.get("parameters", {}))
        if isinstance(name, str) and name in tool_names:
            calls.append(_tool_call({"function": {"name": name, "arguments": args}}))
    if not calls:
        return content, []
    rest = _TAGGED.sub("", content).strip() if tagged else ""
    return rest, calls


def _count_usage(completion: Completion, usage: Any, model: str, request_chars: int) -> None:
    usage = usage if isinstance(usage, dict) else {}
    prompt, output = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(output, int):
        completion.usage_estimated = True
        answer = completion.content + "".join(
            c["function"]["name"] + c["function"]["arguments"] for c in completion.tool_calls)
        prompt = request_chars // CHARS_PER_TOKEN + 1
        output = len(answer) // CHARS_PER_TOKEN + 1
    completion.prompt_tokens, completion.completion_tokens = prompt, output
    completion.cached_tokens = min(cached_tokens(usage), prompt)
    reported = usage.get("cost")
    completion.cost_usd = (float(reported) if isinstance(reported, int | float)
                           else cost_for(model, prompt, output, cached=completion.cached_tokens))


def cached_tokens(usage: dict[str, Any]) -> int:
    """Prompt tokens the provider read from its cache: OpenAI's (and OpenRouter's)
    `prompt_tokens_details.cached_tokens`, or Anthropic's `cache_read_input_tokens`."""
    details = usage.get("prompt_tokens_details")
    value = details.get("cached_tokens") if isinstance(details, dict) else None
    if not isinstance(value, int):
        value = usage.get("cache_read_input_tokens")
    return value if isinstance(value, int) and value > 0 else 0

"""A scripted OpenAI-compatible chat-completions server on loopback.

The real openai client (in the test process or in a worker process) talks HTTP to it. Answers
come from per-model queues (`script`), then from `responder(request)`; the default responder
calls `finish` at once. Every request body is recorded in `requests`.

    llm = ScriptedLLM().start()
    llm.script(tool_call("write_file", path="src/a.py", content="x=1"), finish("ok"))
    llm.script(error(429, retry_after=0), model="cheap/model")

Real providers' quirks, each reproducible: `raw_message(...)` sends an assistant message exactly
as given (arguments as an object, no id, content parts, reasoning), `body_error` a 200 carrying
`{"error"}`, `raw_body` an HTML page or broken JSON, `no_choices`, `without_usage`, `cut_off`
(finish_reason "length"), `delayed` (an answer that takes its time), `broken_body` (the connection
drops mid-body); `refuse_max_tokens`, `context_chars` and `valid_keys` make the endpoint
as strict as OpenAI's about `max_tokens`, the context window and the key.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes.loopback import close, serve

Response = dict[str, Any]
_ids = itertools.count(1)


def tool_call(name: str, **arguments: Any) -> Response:
    """An assistant reply that calls one tool."""
    return {"tool_calls": [(name, arguments)]}


def tool_calls(*calls: tuple[str, dict[str, Any]]) -> Response:
    """An assistant reply that calls several tools at once."""
    return {"tool_calls": list(calls)}


def raw_tool_call(name: str, arguments: str) -> Response:
    """A tool call whose arguments string is sent as is (e.g. broken JSON)."""
    return {"tool_calls": [(name, arguments)]}


def text(content: str) -> Response:
    return {"content": content}


def error(
    status: int, message: str = "scripted error", retry_after: float | None = None,
    code: str | None = None,
) -> Response:
    return {"error": status, "message": message, "retry_after": retry_after, "code": code}


def raw_message(**message: Any) -> Response:
    """An assistant message sent exactly as given (content parts, reasoning, odd tool calls)."""
    return {"message": {"role": "assistant", **message}}


def body_error(code: int | str, message: str, **extra: Any) -> Response:
    """HTTP 200 whose body is `{"error": {...}}` (OpenRouter on an upstream failure)."""
    return {"body_error": {"code": code, "message": message, **extra}}


def raw_body(body: str, content_type: str = "text/html", status: int = 200) -> Response:
    """A reply body sent as is: an HTML page, broken JSON."""
    return {"raw_body": body, "content_type": content_type, "status": status}


def no_choices() -> Response:
    return {"no_choices": True}


def without_usage(response: Response) -> Response:
    return {**response, "no_usage": True}


def cut_off(response: Response) -> Response:
    """A reply the provider cut at the output limit (`finish_reason: "length"`)."""
    return {**response, "finish_reason": "length"}


def delayed(seconds: float, response: Response) -> Response:
    return {**response, "delay": seconds}


def broken_body(response: Response) -> Response:
    """A reply whose connection drops mid-body: its headers promise more than ever arrives."""
    return {**response, "broken": True}


def finish(summary: str = "done") -> Response:
    return tool_call("finish", summary=summary)


class RawBody:
    """A reply body sent as it is, not as JSON."""

    def __init__(self, body: str, content_type: str) -> None:
        self.body, self.content_type = body, content_type


class ScriptedLLM:
    def __init__(self, *, prompt_tokens: int = 10, completion_tokens: int = 5,
                 cost: float | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.queues: dict[str | None, deque[Response]] = defaultdict(deque)
        self.responder: Callable[[dict[str, Any]], Response] = lambda _req: finish()
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.cost = cost
        self.dead_models: set[str] = set()
        # quirks of strict endpoints: models answering 400 to `max_tokens`, a context window
        # (in characters of the request's messages) beyond which a request is refused
        self.refuse_max_tokens: set[str] = set()
        self.context_chars: int | None = None
        self.valid_keys: set[str] | None = None
        # a provider's prompt cache (as OpenAI's): when on, prompt_tokens count the request
        # (~4 characters a token) and a prefix seen before, in blocks of `cache_block` tokens
        # once it reaches `cache_min_tokens`, is reported as `prompt_tokens_details.cached_tokens`
        self.prefix_cache = False
        self.cache_min_tokens = 1024
        self.cache_block = 128
        self._seen_prompts: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- control ---------------------------------------------------------------------------
    def script(self, *responses: Response, model: str | None = None) -> ScriptedLLM:
        with self._lock:
            self.queues[model].extend(responses)
        return self

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.queues.clear()
            self.dead_models.clear()
            self.refuse_max_tokens.clear()
            self.context_chars = None
            self.valid_keys = None
            self.prefix_cache = False
            self.cache_min_tokens, self.cache_block = 1024, 128
            self._seen_prompts.clear()
            self.responder = lambda _req: finish()

    def requests_for(self, model: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r.get("model") == model]

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> ScriptedLLM:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": "not found"}})
                    return
                key = (self.headers.get("authorization") or "").removeprefix("Bearer ")
                if fake.valid_keys is not None and key not in fake.valid_keys:
                    with fake._lock:
                        fake.requests.append(body)
                    self._send(401, {"error": {"message": "Invalid API key", "code": 401}})
                    return
                status, payload, headers = fake._answer(body)
                if headers.pop("x-fake-broken", None):
                    self._send_broken(payload)
                    return
                self._send(status, payload, headers)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": []})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def _send_broken(self, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data) * 2))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

            def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None):
                raw = isinstance(payload, RawBody)
                data = payload.body.encode() if raw else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type",
                                 payload.content_type if raw else "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self._server = serve(Handler)
        return self

    def stop(self) -> None:
        close(self._server)
        self._server = None

    def __enter__(self) -> ScriptedLLM:
        return self.start()

    def __exit__(self, *_exc: Any) -> None:
        self.stop()

    # -- answering -------------------------------------------------------------------------
    def _next(self, body: dict[str, Any]) -> Response:
        model = body.get("model")
        with self._lock:
            self.requests.append(body)
            if model in self.dead_models:
                return error(503, f"model {model} is down")
            for key in (model, None):
                if self.queues.get(key):
                    return self.queues[key].popleft()
        return self.responder(body)

    def _refusal(self, body: dict[str, Any]) -> Response | None:
        """What a strict endpoint refuses before answering."""
        model = body.get("model")
        if model in self.refuse_max_tokens and "max_tokens" in body:
            return error(400, "Unsupported parameter: 'max_tokens' is not supported with this "
                         "model. Use 'max_completion_tokens' instead.",
                         code="unsupported_parameter")
        size = len(json.dumps(body.get("messages", [])))
        if self.context_chars is not None and size > self.context_chars:
            return error(400, f"This model's maximum context length is {self.context_chars} "
                         f"tokens. However, your messages resulted in {size} tokens.",
                         code="context_length_exceeded")
        return None

    def _answer(self, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        refused = self._refusal(body)
        if refused is not None:
            with self._lock:
                self.requests.append(body)
        response = refused or self._next(body)
        if response.get("delay"):
            time.sleep(float(response["delay"]))
        if "error" in response:
            headers = {}
            if response.get("retry_after") is not None:
                headers["retry-after"] = str(response["retry_after"])
            payload = {"error": {"message": response["message"], "type": "scripted",
                                 "code": response.get("code") or response["error"]}}
            return int(response["error"]), payload, headers
        if "raw_body" in response:
            raw = RawBody(response["raw_body"], response["content_type"])
            return int(response["status"]), raw, {}
        if "body_error" in response:
            return 200, {"error": response["body_error"]}, {}
        if response.get("broken"):
            return 200, self._completion(body, response), {"x-fake-broken": "1"}
        return 200, self._completion(body, response), {}

    def _cache_lookup(self, body: dict[str, Any]) -> tuple[int, int]:
        """(prompt tokens, of which cached): the longest prefix shared with an earlier prompt."""
        text = _prompt_text(body)
        with self._lock:
            best = 0
            for earlier in self._seen_prompts:
                n = len(os.path.commonprefix([earlier, text]))
                best = max(best, n)
            self._seen_prompts.append(text)
        total = len(text) // 4 + 1
        blocks = (best // 4) // self.cache_block * self.cache_block
        return total, blocks if blocks >= self.cache_min_tokens else 0

    def _completion(self, body: dict[str, Any], response: Response) -> dict[str, Any]:
        message: dict[str, Any] = response.get("message") or {
            "role": "assistant", "content": response.get("content")}
        calls = response.get("tool_calls") or []
        if calls:
            message["tool_calls"] = [
                {
                    "id": f"call_{next(_ids)}",
                    "type": "function",
                    "function": {
                        "name": name,
                        "arguments": args if isinstance(args, str) else json.dumps(args),
                    },
                }
                for name, args in calls
            ]
        prompt_tokens, cached = self.prompt_tokens, 0
        if self.prefix_cache:
            prompt_tokens, cached = self._cache_lookup(body)
        usage: dict[str, Any] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": prompt_tokens + self.completion_tokens,
        }
        if self.prefix_cache:
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
        if self.cost is not None:
            usage["cost"] = self.cost
        finish_reason = response.get("finish_reason") or ("tool_calls" if calls else "stop")
        payload = {
            "id": f"chatcmpl-{next(_ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "scripted"),
            "choices": [] if response.get("no_choices") else [
                {"index": 0, "message": message, "finish_reason": finish_reason}],
        }
        if not response.get("no_usage"):
            payload["usage"] = usage
        return payload


def _prompt_text(body: dict[str, Any]) -> str:
    """The prompt as a provider caches it: the tools, then the messages, in request order."""
    return json.dumps({"model": body.get("model"), "tools": body.get("tools") or []}) + \
        "".join(json.dumps(m) for m in body.get("messages", []))


def last_user_text(request: dict[str, Any]) -> str:
    """The text of the last user message of a recorded request."""
    for msg in reversed(request.get("messages", [])):
        if msg.get("role") == "user":
            content = msg.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""

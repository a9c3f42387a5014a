"""A scripted OpenAI-compatible chat-completions server on loopback.

The real openai client (in the test process or in a worker process) talks HTTP to it. Answers
come from per-model queues (`script`), then from `responder(request)`; the default responder
calls `finish` at once. Every request body is recorded in `requests`.

    llm = ScriptedLLM().start()
    llm.script(tool_call("write_file", path="src/a.py", content="x=1"), finish("ok"))
    llm.script(error(429, retry_after=0), model="cheap/model")
"""

from __future__ import annotations

import itertools
import json
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
    status: int, message: str = "scripted error", retry_after: float | None = None
) -> Response:
    return {"error": status, "message": message, "retry_after": retry_after}


def delayed(seconds: float, response: Response) -> Response:
    return {**response, "delay": seconds}


def finish(summary: str = "done") -> Response:
    return tool_call("finish", summary=summary)


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
                status, payload, headers = fake._answer(body)
                self._send(status, payload, headers)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": []})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
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

    def _answer(self, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        response = self._next(body)
        if response.get("delay"):
            time.sleep(float(response["delay"]))
        if "error" in response:
            headers = {}
            if response.get("retry_after") is not None:
                headers["retry-after"] = str(response["retry_after"])
            payload = {"error": {"message": response["message"], "type": "scripted",
                                 "code": response["error"]}}
            return int(response["error"]), payload, headers
        message: dict[str, Any] = {"role": "assistant", "content": response.get("content")}
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
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }
        if self.cost is not None:
            usage["cost"] = self.cost
        payload = {
            "id": f"chatcmpl-{next(_ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "scripted"),
            "choices": [{"index": 0, "message": message,
                         "finish_reason": "tool_calls" if calls else "stop"}],
            "usage": usage,
        }
        return 200, payload, {}


def last_user_text(request: dict[str, Any]) -> str:
    """The text of the last user message of a recorded request."""
    for msg in reversed(request.get("messages", [])):
        if msg.get("role") == "user":
            content = msg.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""

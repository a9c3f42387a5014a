"""Helpers for agent-loop tests: answer the scripted LLM per task (by title) and per role."""

from __future__ import annotations

import json
import re
import threading
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

from tests.fakes.llm_server import Response, finish, text

Reply = Response | Callable[[dict[str, Any]], Response]


def title_of(request: dict[str, Any]) -> str:
    """The task title a recorded request works on (from its system or inspector prompt)."""
    for msg in request.get("messages", []):
        content = msg.get("content") or ""
        if isinstance(content, list):  # content parts (e.g. with cache breakpoints)
            content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        for line in str(content).splitlines():
            if line.startswith("Title: "):
                return line.removeprefix("Title: ").strip()
    return ""


def is_inspector(request: dict[str, Any]) -> bool:
    return "response_format" in request


def verdict(score: float, *problems: str) -> Response:
    return text(json.dumps({"score": score, "problems": list(problems),
                            "verdict": "pass" if score >= 0.7 else "revise"}))


class Router:
    """Per-title queues for the agent and for the inspector; defaults: finish / pass."""

    def __init__(self) -> None:
        self.agent: dict[str, deque[Reply]] = defaultdict(deque)
        self.inspector: dict[str, deque[Reply]] = defaultdict(deque)
        self.default: dict[str, Reply] = {}
        self._lock = threading.Lock()

    def script(self, title: str, *replies: Reply) -> Router:
        self.agent[title].extend(replies)
        return self

    def review(self, title: str, *replies: Reply) -> Router:
        self.inspector[title].extend(replies)
        return self

    def __call__(self, request: dict[str, Any]) -> Response:
        title = title_of(request)
        with self._lock:
            if is_inspector(request):
                queue, fallback = self.inspector[title], verdict(0.95)
            else:
                queue, fallback = self.agent[title], self.default.get(title, finish())
            reply = queue.popleft() if queue else fallback
        return reply(request) if callable(reply) else reply


def requests_about(requests: list[dict[str, Any]], title: str, *, inspector: bool = False
                   ) -> list[dict[str, Any]]:
    return [r for r in requests if title_of(r) == title and is_inspector(r) == inspector]


async def events_of(client: Any, task_id: int, type: str | None = None) -> list[dict[str, Any]]:
    data = (await client.get(f"/tasks/{task_id}/events")).json()["data"]
    return [e for e in data if type is None or e["type"] == type]


async def agent_named(client: Any, name: str) -> dict[str, Any]:
    agents = (await client.get("/agents")).json()["data"]
    return next(a for a in agents if a["name"] == name)


async def dashboard_page(client: Any, path: str) -> str:
    """The dashboard page at `path`, signed in with the API client's own key."""
    root = str(client.base_url).rstrip("/").removesuffix("/api/v1")
    login = await client.get(f"{root}/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', login.text)
    assert csrf, login.text[:300]
    key = client.headers["Authorization"].removeprefix("Bearer ")
    await client.post(f"{root}/login", data={"api_key": key, "csrf": csrf.group(1)})
    page = await client.get(f"{root}{path}")
    assert page.status_code == 200, page.text[:500]
    return page.text

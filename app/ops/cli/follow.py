"""Following a task live over Server-Sent Events, printed for a person.

On a terminal: a status line (spinner, phase, elapsed time, tokens and cost so far) under the
lines that stay (each tool call with a one-line result, refusals and retries in colour). Piped:
the same lines, plain, no spinner. The stream resumes after a dropped connection from the last
event seen (Last-Event-ID); the log is the truth, so nothing is shown twice or skipped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx

from app.core.statuses import TERMINAL_VALUES
from app.ops.api_errors import refusal, request, unreachable

if TYPE_CHECKING:  # rich is loaded when a task is followed, not by `taskbench worker`
    from rich.console import Console
    from rich.status import Status

RECONNECTS = 20
OK_STATUSES = ("completed", "completed_with_warnings")


def escape(text: str) -> str:
    """Text shown as it is, never read as rich markup (a tool's output is hostile)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def one_line(text: Any, width: int = 100) -> str:
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


class Progress:
    """What a person sees of a task's events."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.phase = ""
        self.status = ""
        self.tokens = 0
        self.cost = 0.0
        self.started = time.monotonic()

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        what = self.phase or self.status or "waiting"
        return (f"[bold]{escape(what)}[/bold]  {elapsed:5.1f}s  "
                f"{self.tokens} tokens  ${self.cost:.4f}")

    def show(self, event: dict[str, Any]) -> None:
        kind, data = event.get("type", ""), event.get("data") or {}
        out = self.console.print
        if kind == "status":
            self.status = str(data.get("status", ""))
            reason = f" — {one_line(data.get('reason'))}" if data.get("reason") else ""
            out(f"[cyan]● {escape(self.status)}[/cyan]{escape(reason)}")
        elif kind == "phase":
            self.phase = str(data.get("phase", ""))
        elif kind == "llm_call":
            self.tokens += int(data.get("prompt_tokens") or 0) + \
                int(data.get("completion_tokens") or 0)
            self.cost += float(data.get("cost_usd") or 0)
        elif kind == "tool_call":
            tool = escape(str(data.get("tool", "?")))
            result = escape(one_line(data.get("output"), 90))
            if data.get("refused"):
                out(f"  [yellow]✗ {tool}[/yellow] refused: {result}")
            elif data.get("ok", True):
                out(f"  [green]✓ {tool}[/green] {result}")
            else:
                out(f"  [red]✗ {tool}[/red] {result}")
        elif kind in ("tool_refused", "llm_retry", "retry", "provider_error", "stuck",
                      "escalated", "sandbox_unavailable"):
            out(f"  [yellow]! {escape(kind)}[/yellow] {escape(one_line(data))}")
        elif kind == "question":
            asked = escape(one_line(data.get("question"), 300))
            out(f"[magenta]? the agent asks:[/magenta] {asked}")
        elif kind == "review":
            out(f"  [blue]review[/blue] {escape(one_line(data.get('verdict') or data))}")


def _events(c: httpx.Client, task_id: int, after: int) -> Iterator[dict[str, Any]]:
    """The task's events after `after`, live, as SSE (raises httpx errors to the caller)."""
    headers = {"Accept": "text/event-stream", "Last-Event-ID": str(after)}
    with c.stream("GET", f"/tasks/{task_id}/events", headers=headers,
                  timeout=httpx.Timeout(30, read=60)) as resp:
        if resp.status_code >= 400:
            resp.read()
            raise refusal(resp)
        data: list[str] = []
        for line in resp.iter_lines():
            if line.startswith("data:"):
                data.append(line[5:].lstrip())
            elif line == "" and data:
                yield json.loads("\n".join(data))
                data = []


def follow(c: httpx.Client, task_id: int, api: str, *, live: bool = True) -> int:
    """Show the task's events (live until it ends when `live`); 0 if it completed, else 1."""
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    progress = Progress(console)
    after, drops = 0, 0
    status: Status | None = console.status(progress.line()) if console.is_terminal and live \
        else None
    if status:
        status.start()
    try:
        if not live:
            while True:  # page through the whole log, 1,000 events at a time
                page = request(c, "GET", f"/tasks/{task_id}/events",
                               params={"after": after, "limit": 1000}).json()["data"]
                for event in page:
                    after = max(after, int(event.get("seq", after)))
                    progress.show(event)
                if len(page) < 1000:
                    break
            return _ending(c, task_id, api, console, final=False)
        # a missing task or an API that is down is one line at once, not a round of retries
        request(c, "GET", f"/tasks/{task_id}")
        while True:
            try:
                for event in _events(c, task_id, after):
                    after = max(after, int(event.get("seq", after)))
                    progress.show(event)
                    if status:
                        status.update(progress.line())
                    if event.get("type") == "status" and \
                            (event.get("data") or {}).get("status") in TERMINAL_VALUES:
                        if status:
                            status.stop()
                            status = None
                        return _ending(c, task_id, api, console)
            except (httpx.TransportError, httpx.StreamError) as exc:
                drops += 1
                if drops > RECONNECTS:
                    raise unreachable(api) from exc
                time.sleep(min(0.2 * drops, 2.0))
                continue
            # the server closed the stream without an end: check, then resume
            task = request(c, "GET", f"/tasks/{task_id}").json()
            if task["status"] in TERMINAL_VALUES:
                if status:
                    status.stop()
                    status = None
                return _ending(c, task_id, api, console)
    except KeyboardInterrupt:
        console.print(f"\nstopped following; the task goes on. Resume with: "
                      f"taskbench tasks logs {task_id} --follow")
        return 130
    finally:
        if status:
            status.stop()


def _ending(c: httpx.Client, task_id: int, api: str, console: Console, *,
            final: bool = True) -> int:
    """The summary, the artifacts and where the report is; the exit code by outcome."""
    task = request(c, "GET", f"/tasks/{task_id}").json()
    state = task["status"]
    if state not in TERMINAL_VALUES and not final:
        console.print(f"task {task_id} is {state} (follow it: taskbench tasks logs {task_id} -f)")
        return 0
    colour = "green" if state in OK_STATUSES else "red"
    console.print(f"[bold {colour}]task {task_id} {escape(state)}[/bold {colour}]")
    if task.get("summary"):
        console.print(escape(str(task["summary"])))
    if task.get("error") and state not in OK_STATUSES:
        console.print(f"[red]{escape(str(task['error']))}[/red]")
    usage = task.get("usage") or {}
    if usage.get("steps"):
        console.print(f"usage: {usage['prompt_tokens'] + usage['completion_tokens']} tokens, "
                      f"${usage['cost_usd']:.4f}, {usage['steps']} model calls")
    files = request(c, "GET", f"/tasks/{task_id}/artifacts").json()
    for f in files:
        console.print(f"  file {escape(f['path'])} ({f['bytes']} bytes)")
    base = api.rstrip("/")
    shown = task.get("links") or {}
    console.print(f"dashboard: {shown.get('dashboard') or f'{base}/tasks/{task_id}'}")
    console.print(f"report:    {base}/api/v1/tasks/{task_id}/report.pdf "
                  f"(or: taskbench tasks download {task_id})")
    return 0 if state in OK_STATUSES else 1

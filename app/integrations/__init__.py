"""Deliverables: the PDF report, notification email (outbox) and GitHub pull requests.

The runner calls exactly these three hooks; each is safe to call twice (a redelivered task
may run it again), and none lets a secret reach the workspace, an event or a log.

    prepare(task, workspace, settings, emit)   before the agent starts (e.g. clone github.repo)
    enqueue_notifications(conn, ended)         inside the transaction that ends the task
    after_end(task_id)                         after that commit: report.pdf, PR body, issue
                                               comment, then the task's emails and webhook
    notify_question(task_id)                   after a question's pause: its emails, webhook

    deliver/
    ├── report.py, report_data.py, pdf.py      WeasyPrint reports (safe URL fetcher)
    ├── outbox.py, outbox_state.py, outbox_send.py, email.py   email, exactly once
    ├── webhook.py, questions.py               signed webhooks (at least once), question text
    └── github.py, gitops.py                   PyGithub + host git (token only in env)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import insert, update
from sqlmodel import col

from app.core.config import Settings, get_settings
from app.core.db import session_scope
from app.integrations import due, outbox
from app.integrations.webhook import flush_webhooks
from app.models import OutboxMessage, Task, table, utcnow
from app.sandbox.workspace import Workspace
from app.tasks import lifecycle

log = logging.getLogger(__name__)


def _as_dict(task: Any) -> dict[str, Any]:
    return task if isinstance(task, dict) else task.model_dump()


async def prepare(task: Any, workspace: Workspace, settings: Settings, emit: Any) -> None:
    """Clone github.repo into the workspace's src/ when the task asks for a repository."""
    data = _as_dict(task)
    spec = data.get("github") or {}
    if not spec.get("repo"):
        return
    from app.integrations.github import clone_for_task

    cloned = await _cloned_before(int(data["id"]))
    base = await clone_for_task(data, workspace, settings, cloned_before=cloned)
    # the durable mark of a finished clone: without it a redelivery makes the clone again
    await emit("github", {"action": "cloned", "repo": spec["repo"], "base_branch": base})


async def _cloned_before(task_id: int) -> bool:
    """Whether a delivery of the task finished its clone (its `cloned` event is written)."""
    from sqlmodel import select

    from app.models import TaskEvent

    async with session_scope() as session:
        found = (await session.exec(select(TaskEvent.data).where(
            TaskEvent.task_id == task_id, TaskEvent.type == "github"))).all()
    return any((data or {}).get("action") == "cloned" for data in found)


async def enqueue_notifications(conn: Any, ended: lifecycle.EndedTask) -> None:
    """Write the task's notification rows through `conn` (a session or a connection), and mark
    its deliverables owed (see app.integrations.due); both commit with the status change."""
    rows = outbox.task_end_messages(ended.id, ended.attempts, ended.notify)
    if rows:
        await conn.execute(insert(table(OutboxMessage)),
                           [r.model_dump(exclude={"id"}) for r in rows])
    if owes_deliverables(ended):
        await conn.execute(update(table(Task)).where(col(Task.id) == ended.id)
                           .values(delivery_due_at=utcnow()))


def owes_deliverables(ended: lifecycle.EndedTask) -> bool:
    """Whether the ended task owes a report, an email or a pull request at once."""
    return bool(get_settings().eager_reports or (ended.notify or {}).get("email")
                or ended.github)


def notifies(ended: lifecycle.EndedTask) -> bool:
    """Whether enqueue_notifications writes anything for `ended`."""
    return owes_deliverables(ended) or bool(
        outbox.task_end_messages(ended.id, ended.attempts, ended.notify))


lifecycle.on_end(enqueue_notifications, writes=notifies)  # the rows commit with the status change


async def after_end(task_id: int, *, engine: Any = None) -> None:
    """Produce what a finished task delivers. Each step is independent and idempotent, so one
    failing (GitHub down) neither blocks the others nor breaks a re-run. Skipped while another
    deliverer holds the task's delivery; owed again (the sweep re-sends) until it finishes."""
    if not await due.claim(task_id, engine):
        return
    await _deliver(task_id, engine)
    await due.done(task_id, engine)


async def _deliver(task_id: int, engine: Any) -> None:
    settings = get_settings()
    if settings.eager_reports or await _report_needed_now(task_id, engine):
        await _step("report", task_id, engine, _render_report, task_id, settings, engine)
        await due.renew(task_id, engine)
    await _step("github", task_id, engine, _github, task_id, settings, engine)
    # Email last: the message attaches the report rendered above.
    await _step(
        "email",
        task_id,
        engine,
        outbox.flush_pending,
        100,
        task_id=task_id,
        settings=settings,
        engine=engine,
    )
    await _step("webhook", task_id, engine, flush_webhooks, 100, task_id=task_id,
                settings=settings, engine=engine)


async def notify_question(task_id: int) -> None:
    """Send what tells a person about the task's question now (the sweep retries failures)."""
    settings = get_settings()
    for flush in (outbox.flush_pending, flush_webhooks):
        try:
            await flush(100, task_id=task_id, settings=settings)
        except Exception:  # noqa: BLE001 - the rows stay pending; the sweep sends them later
            log.exception("question notifications of task %s: %s failed", task_id,
                          flush.__name__)


async def _step(name: str, task_id: int, engine: Any, func: Any, /, *args: Any, **kw: Any) -> None:
    try:
        await func(*args, **kw)
    except Exception as exc:  # noqa: BLE001 - recorded as an event; the sweep retries email
        log.warning("deliverable %s of task %s failed: %s", name, task_id, type(exc).__name__)
        await _event(engine, task_id, "deliver_error", {"step": name, "error": str(exc)[:500]})


async def _report_needed_now(task_id: int, engine: Any) -> bool:
    """With lazy reports, render now only for an email attachment or a PR body."""
    from app.models import Task

    async with session_scope(engine) as session:
        task = await session.get(Task, task_id)
    return bool(task and ((task.notify or {}).get("email") or task.github))


async def _render_report(task_id: int, settings: Settings, engine: Any) -> None:
    from app.integrations.report import render_task_report

    path = await render_task_report(task_id, settings=settings, engine=engine)
    await _event(
        engine,
        task_id,
        "report",
        {"path": Path(path).name, "url": f"/api/v1/tasks/{task_id}/report.pdf"},
    )


async def _github(task_id: int, settings: Settings, engine: Any) -> None:
    from app.integrations import github
    from app.models import Task

    async with session_scope(engine) as session:
        row = await session.get(Task, task_id)
    if row is None or not row.github:
        return
    task = row.model_dump()
    number = await github.update_pr_body(task, settings) if task["github"].get("repo") else None
    if task["github"].get("issue"):
        url = await github.comment_on_issue(task, settings, _issue_text(task, settings, number))
        await _event(engine, task_id, "github", {"action": "issue_comment", "url": url})


def _issue_text(task: dict[str, Any], settings: Settings, pr: int | None) -> str:
    from app.integrations import links

    url = links.task_page(settings, task["id"])
    lines = [f"Taskbench task [#{task['id']}]({url}) **{task['status']}**.", ""]
    if task.get("summary"):
        lines += [task["summary"][:4000], ""]
    if task.get("error") and task["status"] != "completed":
        lines += [f"Reason: {task['error'][:2000]}", ""]
    if pr:
        lines.append(f"Pull request: #{pr}")
    lines.append(f"[Report (PDF)]({links.report_link(settings, task['id'])})")
    return "\n".join(lines)


async def _event(engine: Any, task_id: int, type_: str, data: dict[str, Any]) -> None:
    from app.tasks.events import append_event, publish

    async with session_scope(engine) as session:
        event = await append_event(session, task_id, type_, data)
    publish([event])

"""The tool-call journal: a tool with an effect is never run twice for one call.

A step's checkpoint is written after all of its reply's tool calls ran, so a worker that dies in
between used to leave effects the checkpoint did not know of, and the resumed run repeated them.
Now each call of a tool in JOURNALED gets an intent row (app.models.ToolIntent) committed before
it runs, with its idempotency key, the reply it belongs to and what reconciling needs (the
file's hash before); the row is marked done with its result after: right away for a call whose
outcome cannot be found out later (commands), else with the step's record. The checkpoint that
holds the result settles it (app.run.steps).

A resumed run finds the unsettled rows of the reply it was in the middle of and finishes that
reply instead of asking the model again (app.run.agent.loop): a done call gives its recorded
result, a call with no row never started and runs now, and a started one is reconciled:

    file      write_file, edit_file, insert_lines, undo_edit: the file as it is now against its
              hash before (and, for write_file, the content asked for): applied, or run now
    outbox    send_email: the message is in the outbox (its Message-ID) or it is sent now
    rerun     pip_install, open_pull_request: repeating is safe (same packages; the PR is
              found by the task's head branch and updated)
    unknown   run_command, run_python, delegate, message_task: the model is told plainly that
              the outcome of that call is unknown; except a command whose worker died making
              the task's first venv (none was ever finished): it never started, and runs now
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, update
from sqlmodel import col, select

from app.core.db import RunConnection, connection_scope, get_engine, session_factory
from app.core.transient import retrying
from app.models import OutboxMessage, TaskEvent, ToolIntent, from_row, table, utcnow
from app.sandbox import fs
from app.tools.registry import Dispatched

JOURNALED: dict[str, str] = {
    "write_file": "file", "edit_file": "file", "insert_lines": "file", "undo_edit": "file",
    "send_email": "outbox",
    "pip_install": "rerun", "open_pull_request": "rerun",
    "run_command": "unknown", "run_python": "unknown",
    "delegate": "unknown", "message_task": "unknown",
}
HASH_LIMIT = 8 * 1024 * 1024
# commands run in the task's venv, made (app.tools.venvs) before the first of them starts
NEEDS_VENV = frozenset({"run_command", "run_python"})


@dataclass
class Reply:
    """The model reply whose calls are running: the unit a resumed run finishes."""

    message: dict[str, Any]
    uid: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    found: dict[int, ToolIntent] = field(default_factory=dict)  # journaled before a restart
    single: bool = False  # one call and no model reply: a playbook step's

    def key(self, task_id: int, position: int) -> str:
        return f"t{task_id}-{self.uid}-{position}"


def parse_args(raw: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        args = json.loads(raw or "{}")
    except ValueError:
        return {}
    return args if isinstance(args, dict) else {}


def _file_hash(root: Path, path: Any) -> str | None:
    if not isinstance(path, str):
        return None
    try:
        return hashlib.sha256(fs.read_bytes(root, path, HASH_LIMIT)).hexdigest()
    except (fs.PathRefused, OSError):
        return None


async def open_intent(task_id: int, root: Path, reply: Reply, position: int, name: str,
                      args: dict[str, Any]) -> int:
    """Commit the intent row of one call before it runs; returns its id."""
    before: dict[str, Any] = {}
    if JOURNALED[name] == "file":
        before["sha256"] = await asyncio.to_thread(_file_hash, root, args.get("path"))
    row = {"task_id": task_id, "key": reply.key(task_id, position), "tool": name,
           "position": position, "args": args, "reply": reply.message, "before": before,
           "status": "started", "settled": False, "created_at": utcnow(),
           "updated_at": utcnow()}

    async def write() -> int:
        async with connection_scope() as conn:
            result = await conn.execute(
                insert(table(ToolIntent)).values(**row).returning(col(ToolIntent.id)))
            return int(result.scalar_one() or 0)

    return await retrying(write, "journal a tool call")


def marks_done_now(name: str) -> bool:
    """Whether the call is marked done in a transaction of its own right after it ran (its
    outcome cannot be found out later), rather than with the step's record (one transaction
    fewer; a call that ran and was not recorded is reconciled exactly from what it changed)."""
    return JOURNALED.get(name) == "unknown"


def stored(result: Dispatched) -> dict[str, Any]:
    return {"ok": result.ok, "output": result.output, "data": result.data,
            "refused": result.refused}


async def close_intent(intent_id: int, result: Dispatched) -> None:
    """Mark the call done with its result (what a resumed run hands the model)."""
    done = stored(result)

    async def write() -> None:
        async with connection_scope() as conn:
            await conn.execute(update(table(ToolIntent))
                               .where(col(ToolIntent.id) == intent_id)
                               .values(status="done", result=done, updated_at=utcnow()))

    await retrying(write, "record a tool call's result")


async def unfinished_reply(task_id: int, connection: RunConnection | None = None
                           ) -> Reply | None:
    """The reply a dead worker was running the calls of (its unsettled intents), if any (read
    on the run's `connection` when given)."""
    async def read() -> list[ToolIntent]:
        async with (connection.read() if connection else get_engine().connect()) as conn:
            rows = (await conn.execute(
                table(ToolIntent).select()
                .where(col(ToolIntent.task_id) == task_id, col(ToolIntent.settled).is_(False))
                .order_by(col(ToolIntent.id)))).all()
        return [ToolIntent(**r._mapping) for r in rows]

    rows = await retrying(read, "read the tool journal")
    if not rows:
        return None
    uid = rows[-1].key.split("-")[1]
    last = [r for r in rows if r.key.split("-")[1] == uid]
    return Reply(message=dict(last[0].reply or {}), uid=uid,
                 found={r.position: r for r in last})


async def step_reply(task_id: int, *parts: object) -> Reply:
    """The journal context of a playbook step's call: its uid is fixed by the step, the item
    and the attempt, so a resumed run finds the call a dead worker had started."""
    uid = hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]
    reply = Reply(message={}, uid=uid, single=True)

    async def read() -> Any:
        async with get_engine().connect() as conn:
            return (await conn.execute(table(ToolIntent).select().where(
                col(ToolIntent.key) == reply.key(task_id, 0),
                col(ToolIntent.settled).is_(False)))).first()

    row = await retrying(read, "read the tool journal")
    if row is not None:
        reply.found[0] = from_row(ToolIntent, row._mapping)
    return reply


def recorded(intent: ToolIntent) -> Dispatched:
    result = intent.result or {}
    return Dispatched(intent.tool, bool(result.get("ok")), str(result.get("output", "")),
                      dict(result.get("data") or {}), 0.0, bool(result.get("refused")))


def unknown(intent: ToolIntent, call_id: str) -> Dispatched:
    shown = json.dumps(intent.args, default=str)[:300]
    return Dispatched(intent.tool, False, (
        f"The outcome of call {call_id} ({intent.tool} {shown}) is unknown: the worker running "
        "it stopped before its result was saved, so it may or may not have taken effect. Check "
        "the workspace (or the state it changes) before doing it again."),
        {"reconciled": "unknown"}, 0.0)


async def reconcile(task_id: int, root: Path, intent: ToolIntent,
                    call_id: str) -> Dispatched | None:
    """What became of a call that started and was never marked done: its result, or None when
    it certainly had no effect (or repeating it is safe) and it should run now."""
    how = JOURNALED.get(intent.tool, "unknown")
    if how == "rerun":
        return None
    if how == "file":
        path = intent.args.get("path")
        now = await asyncio.to_thread(_file_hash, root, path)
        if intent.tool == "write_file":
            wanted = hashlib.sha256(str(intent.args.get("content", "")).encode()).hexdigest()
            if now == wanted:
                return Dispatched(intent.tool, True, f"wrote {path} (done before the worker "
                                  "stopped; not repeated)", {"reconciled": "done"}, 0.0)
        if now == intent.before.get("sha256"):
            return None  # the file is as it was: the call had no effect
        if intent.tool != "write_file":
            return Dispatched(intent.tool, True, f"{intent.tool} on {path} took effect before "
                              "the worker stopped (the file changed since); not repeated",
                              {"reconciled": "done"}, 0.0)
        return unknown(intent, call_id)
    if how == "outbox":
        sent = await _outbox_row(task_id, intent)
        if sent is None:
            return None
        return Dispatched(intent.tool, True, f"Email to {sent.recipient}: queued for delivery "
                          "before the worker stopped; not sent again.",
                          {"message_id": sent.message_id, "reconciled": "done"}, 0.0)
    if intent.tool in NEEDS_VENV and await _venv_never_made(task_id, root):
        return None  # its worker died making the task's first venv: the command never ran
    return unknown(intent, call_id)


async def _venv_never_made(task_id: int, root: Path) -> bool:
    """No venv of the task was ever finished (no `venv` event) and none is whole now. (A venv
    that was made and is gone now may have been removed by a command: that proves nothing.)"""
    whole = await asyncio.to_thread(
        lambda: fs.kind(root, ".venv/lib") == "dir" and fs.kind(root, ".venv/bin") == "dir")
    if whole:
        return False
    async with session_factory()() as session:
        made = (await session.exec(select(TaskEvent.id).where(
            col(TaskEvent.task_id) == task_id, col(TaskEvent.type) == "venv").limit(1))).first()
    return made is None


async def _outbox_row(task_id: int, intent: ToolIntent) -> OutboxMessage | None:
    """The outbox message `intent`'s send_email queued, found by what it carries."""
    to = str(intent.args.get("to", "")).strip()
    async with session_factory()() as session:
        rows = (await session.exec(select(OutboxMessage).where(
            col(OutboxMessage.task_id) == task_id, col(OutboxMessage.kind) == "agent",
            col(OutboxMessage.created_at) >= intent.created_at - timedelta(seconds=1)))).all()
    for row in rows:
        payload = row.payload or {}
        if row.recipient.lower() == to.lower() and payload.get("subject") == str(
                intent.args.get("subject", ""))[:200]:
            return row
    return None

"""Email through the outbox, against a real aiosmtpd server on loopback."""

# ruff: noqa: F811  (pytest fixtures imported from deliver_fixtures are re-bound as arguments)
from __future__ import annotations

import asyncio
import email
import email.policy
import socket
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from app.core.config import reset_settings
from app.core.db import session_scope
from app.integrations import enqueue_notifications, outbox_state
from app.integrations.outbox import flush_pending, notifications_for
from app.models import Task
from app.tasks.lifecycle import EndedTask
from app.tools.errors import ToolRefused
from app.tools.mail import send_email
from app.tools.ports import Ports
from tests.factories.deliver import (  # noqa: F401
    create_task,
    engine,
    settings,
    tool_context,
)


class Inbox:
    """aiosmtpd handler that keeps every accepted message."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp(monkeypatch):
    """A way to (re)configure the app's SMTP URL and start/stop a server on a fixed port."""
    port = free_port()
    inbox = Inbox()
    state: dict = {"controller": None}

    def configure(**env):
        monkeypatch.setenv("TASKBENCH_SMTP_URL", f"smtp://127.0.0.1:{port}?starttls=0")
        for k, v in env.items():
            monkeypatch.setenv(f"TASKBENCH_{k.upper()}", str(v))
        return reset_settings()

    def start():
        c = Controller(inbox, hostname="127.0.0.1", port=port)
        c.start()
        state["controller"] = c

    yield type(
        "Smtp",
        (),
        {
            "configure": staticmethod(configure),
            "start": staticmethod(start),
            "inbox": inbox,
            "port": port,
        },
    )
    if state["controller"]:
        state["controller"].stop()


async def end_task(engine, settings, recipients):
    task = await create_task(engine, settings, notify={"email": recipients})
    async with session_scope(engine) as session:
        row = await session.get(Task, task.id)
        # same transaction as the status change
        await enqueue_notifications(session, EndedTask.of(row))
    return task


async def test_each_recipient_gets_exactly_one_message_with_the_pdf(engine, settings, smtp):
    # given a running SMTP server and a task that ended with two recipients
    s = smtp.configure()
    smtp.start()
    task = await end_task(engine, s, ["a@example.com", "b@example.org"])

    # when the outbox is flushed twice
    sent = await flush_pending(10, settings=s, engine=engine)
    again = await flush_pending(10, settings=s, engine=engine)

    # then each recipient got one message with text, HTML and the PDF report
    assert (sent, again) == (2, 0)
    assert sorted(r for rcpts, _ in smtp.inbox.messages for r in rcpts) == [
        "a@example.com",
        "b@example.org",
    ]
    for _, msg in smtp.inbox.messages:
        assert "completed" in msg["Subject"]
        assert msg.get_body(("plain",)).get_content().count("Matplotlib wins on breadth.") == 1
        assert msg.get_body(("html",)) is not None
        pdf = next(p for p in msg.iter_attachments() if p.get_content_type() == "application/pdf")
        assert pdf.get_content().startswith(b"%PDF")
        assert f"http://taskbench.test/tasks/{task.id}/report.pdf" in msg.as_string()
    async with session_scope(engine) as session:
        states = await notifications_for(session, task.id)
    assert [n["status"] for n in states] == ["sent", "sent"]


async def test_failed_task_mail_says_why(engine, settings, smtp):
    s = smtp.configure()
    smtp.start()
    task = await create_task(
        engine,
        s,
        status="failed",
        error="Budget exceeded: 50 steps",
        notify={"email": ["a@example.com"]},
    )
    async with session_scope(engine) as session:
        await enqueue_notifications(session, EndedTask.of(await session.get(Task, task.id)))
    await flush_pending(10, settings=s, engine=engine)
    ((_, msg),) = smtp.inbox.messages
    assert "failed" in msg["Subject"]
    assert "Budget exceeded: 50 steps" in msg.get_body(("plain",)).get_content()


async def test_server_down_messages_wait_then_arrive_once(engine, settings, smtp):
    # given the SMTP server is down, probed again every 0.05 s
    s = smtp.configure(outbox_probe_s=0.05, outbox_max_attempts=2)
    task = await end_task(engine, s, ["a@example.com", "b@example.com"])

    # when the outbox is flushed repeatedly while it is down (more often than max attempts)
    for _ in range(5):
        assert await flush_pending(10, settings=s, engine=engine) == 0
        await asyncio.sleep(0.1)
    async with session_scope(engine) as session:
        waiting = await notifications_for(session, task.id)
    # then the messages wait: an unreachable server is not the messages' fault, so those
    # tries are not counted against them (none failed for good), and the error is shown
    assert {n["status"] for n in waiting} == {"pending"}
    assert {n["attempts"] for n in waiting} == {0}
    assert all("SMTP connect" in (n["last_error"] or "") for n in waiting)

    # and it comes back
    smtp.start()
    await asyncio.sleep(0.25)
    delivered = [await flush_pending(10, settings=s, engine=engine) for _ in range(3)]

    # then every message arrives exactly once
    assert sum(delivered) == 2
    assert len(smtp.inbox.messages) == 2


class Killed(BaseException):
    """Stands in for the worker process dying at a given line."""


async def test_worker_killed_after_sending_does_not_send_twice(engine, settings, smtp, monkeypatch):
    # given a sender that dies after DATA succeeded but before recording `sent`
    s = smtp.configure(outbox_lease_s=0.2)
    smtp.start()
    task = await end_task(engine, s, ["a@example.com"])
    real_mark_sent = outbox_state.mark_sent

    async def die(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(outbox_state, "mark_sent", die)
    with pytest.raises(Killed):
        await flush_pending(10, settings=s, engine=engine)

    # when another worker sweeps after the lease expired
    monkeypatch.setattr(outbox_state, "mark_sent", real_mark_sent)
    await asyncio.sleep(0.3)
    for _ in range(3):
        await flush_pending(10, settings=s, engine=engine)

    # then the message went out once and is shown as unconfirmed, not resent
    assert len(smtp.inbox.messages) == 1
    async with session_scope(engine) as session:
        (note,) = await notifications_for(session, task.id)
    assert note["status"] == "unconfirmed"


async def test_worker_killed_before_the_commit_point_sends_later_once(
    engine, settings, smtp, monkeypatch
):
    # given a sender that dies after claiming, before anything was delivered
    s = smtp.configure(outbox_lease_s=2)
    smtp.start()
    task = await end_task(engine, s, ["a@example.com"])
    real = outbox_state.mark_sending

    async def die(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(outbox_state, "mark_sending", die)
    with pytest.raises(Killed):
        await flush_pending(10, settings=s, engine=engine)
    monkeypatch.setattr(outbox_state, "mark_sending", real)
    assert await flush_pending(10, settings=s, engine=engine) == 0  # still leased

    # when the lease expires
    await asyncio.sleep(2.1)
    sent = await flush_pending(10, settings=s, engine=engine)

    # then it is sent exactly once
    assert sent == 1 and len(smtp.inbox.messages) == 1
    async with session_scope(engine) as session:
        assert [n["status"] for n in await notifications_for(session, task.id)] == ["sent"]


async def test_without_smtp_messages_become_eml_files(engine, settings):
    task = await end_task(engine, settings, ["a@example.com", "b@example.com"])
    assert await flush_pending(10, settings=settings, engine=engine) == 2
    files = sorted((settings.var_dir / "outbox").glob("*.eml"))
    assert len(files) == 2
    msg = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert f"Task {task.id}" in msg["Subject"]


async def test_enqueue_twice_for_the_same_run_cannot_commit(engine, settings):
    task = await create_task(engine, settings, notify={"email": ["a@example.com"]})
    async with session_scope(engine) as session:
        await enqueue_notifications(session, EndedTask.of(await session.get(Task, task.id)))
    with pytest.raises(Exception, match="UNIQUE|unique"):
        async with session_scope(engine) as session:
            await enqueue_notifications(session, EndedTask.of(await session.get(Task, task.id)))


async def test_send_email_tool_is_limited_and_deduplicated(engine, settings, smtp):
    s = smtp.configure(email_allow_domains='["partner.example"]', email_agent_max_per_hour=2)
    smtp.start()
    task = await create_task(engine, s, status="build", notify={"email": ["boss@example.com"]})
    (Path(task.workspace) / "output" / "data.csv").write_text("a,b\n1,2\n")
    ctx = tool_context(task, s, services=Ports(engine=engine))

    await send_email(
        ctx, to="boss@example.com", subject="Hi", body="Draft", attach=["output/data.csv"]
    )
    await send_email(
        ctx, to="boss@example.com", subject="Hi", body="Draft", attach=["output/data.csv"]
    )
    with pytest.raises(ToolRefused):
        await send_email(ctx, to="someone@evil.example", subject="x", body="y")
    await send_email(ctx, to="x@partner.example", subject="Hello", body="partner")
    with pytest.raises(ToolRefused, match="rate limit"):
        await send_email(ctx, to="x@partner.example", subject="Again", body="more")

    assert len(smtp.inbox.messages) == 2  # the replayed identical call was not sent again
    first = smtp.inbox.messages[0][1]
    assert [p.get_filename() for p in first.iter_attachments()] == ["data.csv"]

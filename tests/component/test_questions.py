"""ask_user reaches a person: an email (real SMTP on loopback), the dashboard's inbox, and an
answer by the API resumes the task."""

# ruff: noqa: F811  (the smtp fixture imported from test_email_outbox is re-bound as an argument)
from __future__ import annotations

import asyncio

from aiosmtpd.controller import Controller

from app.core.config import reset_settings
from app.integrations.outbox import flush_pending
from app.integrations.questions import duration_text
from app.run.lease import KEEPER_INTERVAL_S
from tests.component.test_email_outbox import Inbox, free_port, smtp  # noqa: F401
from tests.conftest import run_enqueued
from tests.factories.loop import Router, dashboard_page, events_of, requests_about
from tests.fakes.llm_server import last_user_text, tool_call

PUBLIC = "https://tb.example.test"


def text_of(msg) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content()


async def test_question_arrives_by_email_and_an_api_answer_completes_the_task(
    app_client, enqueued, llm, smtp
):
    # given a real SMTP server, a public URL, and a model that asks before it works
    smtp.configure(public_url=PUBLIC, input_timeout_s=7200)
    smtp.start()
    llm.responder = Router().script("colour", tool_call("ask_user", question="Which colour?"))
    resp = await app_client.post("/tasks", json={
        "title": "colour", "complexity": 2, "notify": {"email": ["owner@example.com"]}})
    task_id = resp.json()["id"]
    # when it runs up to the question
    await run_enqueued(enqueued)
    # then the owner got one email with the question, absolute links, the deadline and its effect
    waiting = (await app_client.get(f"/tasks/{task_id}")).json()
    assert waiting["status"] == "waiting_input"
    assert len(smtp.inbox.messages) == 1, waiting["notifications"]
    rcpts, msg = smtp.inbox.messages[0]
    assert rcpts == ["owner@example.com"]
    assert msg["Subject"] == f"[Taskbench] Task {task_id} asks: Which colour?"
    body = text_of(msg)
    assert "Which colour?" in body
    assert f"{PUBLIC}/tasks/{task_id}#answer" in body
    assert f"POST {PUBLIC}/api/v1/tasks/{task_id}/answer" in body
    assert f'taskbench answer {task_id} "your answer"' in body
    assert "waits 2 hours for an answer (until " in body
    assert 'the task fails with "no answer within 7200 s"' in body
    sent = await events_of(app_client, task_id, "question_sent")
    assert sent and sent[0]["data"]["email"] == ["owner@example.com"]
    assert sent[0]["data"]["webhooks"] == 0
    # and a second flush sends nothing again (one Message-ID, at most once)
    assert await flush_pending() == 0 and len(smtp.inbox.messages) == 1
    # and the dashboard's inbox lists the open question with a form to answer it
    page = await dashboard_page(app_client, "/tasks")
    assert 'id="inbox"' in page and "Which colour?" in page
    assert f'action="/tasks/{task_id}/answer"' in page

    # when the owner answers through the API
    answered = await app_client.post(f"/tasks/{task_id}/answer", json={"content": "Blue"})
    assert answered.status_code == 201, answered.text
    await run_enqueued(enqueued)
    # then the task resumed with the answer in the conversation and completed
    task = (await app_client.get(f"/tasks/{task_id}")).json()
    assert task["status"] == "completed", task
    after = requests_about(llm.requests, "colour")[1]
    assert "Blue" in last_user_text(after)
    # and the question is no longer in the inbox; the end email went out as well
    assert "Which colour?" not in await dashboard_page(app_client, "/tasks")
    subjects = [m["Subject"] for _, m in smtp.inbox.messages]
    assert len(subjects) == 2 and "completed" in subjects[1]


class SlowInbox(Inbox):
    """An SMTP server slower to accept a recipient than the worker's lease keeper waits."""

    async def handle_RCPT(self, server, session, envelope, address, options):  # noqa: N802
        await asyncio.sleep(KEEPER_INTERVAL_S * 4)
        envelope.rcpt_tos.append(address)
        return "250 OK"


async def test_a_slow_mail_server_still_gets_the_question(app_client, enqueued, llm,
                                                          monkeypatch):
    # given an SMTP server slower than the lease keeper's interval
    inbox = SlowInbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        monkeypatch.setenv("TASKBENCH_SMTP_URL",
                           f"smtp://127.0.0.1:{controller.port}?starttls=0")
        reset_settings()
        llm.responder = Router().script("slow", tool_call("ask_user", question="Left or right?"))
        await app_client.post("/tasks", json={
            "title": "slow", "complexity": 1, "notify": {"email": ["owner@example.com"]}})
        # when the task pauses on its question
        await run_enqueued(enqueued)
        # then the mail was delivered whole, not cut off when the run handed the task back
        assert len(inbox.messages) == 1
        assert "Left or right?" in text_of(inbox.messages[0][1])
    finally:
        controller.stop()


async def test_answer_to_a_task_not_waiting_is_a_409(app_client, enqueued):
    resp = await app_client.post("/tasks", json={"title": "quiet", "complexity": 1})
    answer = await app_client.post(f"/tasks/{resp.json()['id']}/answer", json={"content": "x"})
    assert answer.status_code == 409
    assert "not waiting for an answer" in answer.json()["detail"]
    empty = await app_client.post(f"/tasks/{resp.json()['id']}/answer", json={"content": ""})
    assert empty.status_code == 422


def test_question_with_line_breaks_makes_a_one_line_subject():
    from app.core.config import Settings
    from app.integrations.email import compose_question
    from app.integrations.questions import question_context

    task = {"id": 7, "title": "t"}
    ctx = {"task": task, **question_context(
        task, {"question": "Which one?\r\nBcc: victim@example.com", "asked_at": None},
        Settings())}
    msg = compose_question(Settings(), to="a@example.com", msg_id="<x@y>", context=ctx)
    assert msg["Subject"] == "[Taskbench] Task 7 asks: Which one? Bcc: victim@example.com"
    assert msg["Bcc"] is None
    assert "Which one?" in msg.get_body(preferencelist=("plain",)).get_content()


def test_duration_text():
    assert duration_text(3600) == "1 hour"
    assert duration_text(5400) == "90 minutes"
    assert duration_text(86400 * 2) == "2 days"
    assert duration_text(45) == "45 seconds"


def test_links_are_absolute_without_a_public_url():
    from app.core.config import Settings

    assert Settings(public_url="https://tb.example.test/").base_url == "https://tb.example.test"
    assert Settings(host="127.0.0.1", port=8001).base_url == "http://127.0.0.1:8001"
    assert Settings(host="0.0.0.0", port=8000).base_url == "http://localhost:8000"

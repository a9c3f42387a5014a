"""Webhooks on questions and on task end: HMAC-signed, retried through the outbox, SSRF-guarded."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
from sqlmodel import select

from app.core.config import reset_settings
from app.core.db import session_scope
from app.integrations.webhook import flush_webhooks, sign, verify
from app.models import OutboxMessage
from tests.conftest import run_enqueued
from tests.factories.loop import Router
from tests.fakes.llm_server import tool_call
from tests.fakes.webhook_receiver import WebhookReceiver

SECRET = "whsec-test-0123456789abcdef"


@pytest.fixture
def hook(monkeypatch):
    receiver = WebhookReceiver().start()
    monkeypatch.setenv("TASKBENCH_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("TASKBENCH_WEBHOOK_ALLOW_HOSTS", json.dumps([f"127.0.0.1:{receiver.port}"]))
    monkeypatch.setenv("TASKBENCH_PUBLIC_URL", "https://tb.example.test")
    reset_settings()
    yield receiver
    receiver.stop()
    reset_settings()


def signed_by_secret(request: dict) -> bool:
    """The receiver's own check: HMAC-SHA256 over "<t>." + raw body with the shared secret."""
    fields = dict(p.split("=", 1) for p in request["headers"]["Taskbench-Signature"].split(","))
    mac = hmac.new(SECRET.encode(), f"{fields['t']}.".encode() + request["body"], hashlib.sha256)
    fresh = abs(time.time() - int(fields["t"])) < 60
    return fresh and hmac.compare_digest(mac.hexdigest(), fields["v1"])


async def rows(kind: str = "webhook") -> list[OutboxMessage]:
    async with session_scope() as session:
        return list((await session.exec(
            select(OutboxMessage).where(OutboxMessage.kind == kind))).all())


async def test_question_and_end_webhooks_are_signed(app_client, enqueued, llm, hook):
    # given a task with a webhook whose model asks a question first
    llm.responder = Router().script("hooked", tool_call("ask_user", question="Tabs or spaces?"))
    resp = await app_client.post("/tasks", json={
        "title": "hooked", "complexity": 1, "notify": {"webhook": hook.url}})
    assert resp.status_code == 201, resp.text
    task_id = resp.json()["id"]
    # when it runs to the question
    await run_enqueued(enqueued)
    # then one signed task.question webhook arrived with the question and where to answer
    assert len(hook.received) == 1
    question = hook.received[0]
    assert question["path"] == "/hooks/taskbench"
    assert question["headers"]["Taskbench-Event"] == "task.question"
    assert signed_by_secret(question)
    data = json.loads(question["body"])
    assert data["question"] == "Tabs or spaces?" and data["task"]["status"] == "waiting_input"
    assert data["api_url"] == f"https://tb.example.test/api/v1/tasks/{task_id}/answer"
    assert data["expires_at"] and "fails" in data["on_timeout"]
    # when it is answered and finishes
    await app_client.post(f"/tasks/{task_id}/answer", json={"content": "spaces"})
    await run_enqueued(enqueued)
    # then a signed task.ended webhook followed, with another delivery id
    assert [r["headers"]["Taskbench-Event"] for r in hook.received] == ["task.question",
                                                                         "task.ended"]
    ended = hook.received[1]
    assert signed_by_secret(ended)
    assert json.loads(ended["body"])["task"]["status"] == "completed"
    deliveries = {r["headers"]["Taskbench-Delivery"] for r in hook.received}
    assert len(deliveries) == 2
    assert SECRET.encode() not in question["body"] + ended["body"]
    assert {r.status for r in await rows()} == {"sent"}
    # and the task's notifications name the webhook's host only, not its path
    shown = (await app_client.get(f"/tasks/{task_id}")).json()["notifications"]
    assert [n["recipient"] for n in shown] == [f"http://127.0.0.1:{hook.port}"] * 2


async def test_failed_delivery_is_retried_with_the_same_delivery_id(app_client, enqueued, llm,
                                                                    hook, monkeypatch):
    # given a receiver that is down for the first attempt and a short backoff
    monkeypatch.setenv("TASKBENCH_OUTBOX_RETRY_BASE_S", "0.05")
    reset_settings()
    hook.statuses = [503]
    resp = await app_client.post("/tasks", json={
        "title": "retry", "complexity": 1, "notify": {"webhook": hook.url}})
    # when the task ends
    await run_enqueued(enqueued)
    # then the first attempt failed and left the row pending for a retry
    (row,) = await rows()
    assert row.status == "pending" and "HTTP 503" in (row.last_error or "")
    # when the outbox is flushed after the backoff
    time.sleep(0.1)
    assert await flush_webhooks() == 1
    # then the same delivery arrived again, now accepted, and a further flush sends nothing
    assert len(hook.received) == 2
    assert len({r["headers"]["Taskbench-Delivery"] for r in hook.received}) == 1
    assert json.loads(hook.received[1]["body"])["task"]["id"] == resp.json()["id"]
    assert await flush_webhooks() == 0 and (await rows())[0].status == "sent"


async def test_a_private_address_is_refused_without_the_allow_setting(
    app_client, enqueued, llm, hook, monkeypatch
):
    # given the loopback receiver is not in webhook_allow_hosts (as in production)
    monkeypatch.setenv("TASKBENCH_WEBHOOK_ALLOW_HOSTS", "[]")
    reset_settings()
    await app_client.post("/tasks", json={
        "title": "ssrf", "complexity": 1, "notify": {"webhook": hook.url}})
    # when the task ends
    await run_enqueued(enqueued)
    # then nothing was sent and the row failed for good, saying why
    assert hook.received == []
    (row,) = await rows()
    assert row.status == "failed" and "non-public address (127.0.0.1)" in (row.last_error or "")


async def test_webhook_without_a_server_secret_is_a_422(app_client, monkeypatch):
    monkeypatch.delenv("TASKBENCH_WEBHOOK_SECRET", raising=False)
    reset_settings()
    resp = await app_client.post("/tasks", json={
        "title": "x", "complexity": 1, "notify": {"webhook": "https://hooks.example.com/x"}})
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["body", "notify", "webhook"]
    bad = await app_client.post("/tasks", json={
        "title": "x", "complexity": 1, "notify": {"webhook": "ftp://hooks.example.com/x"}})
    assert bad.status_code == 422


def test_verify_accepts_only_a_fresh_untampered_signature():
    body = b'{"event":"task.ended"}'
    now = int(time.time())
    header = sign(SECRET, now, body)
    assert verify(SECRET, header, body)
    assert not verify(SECRET, header, body + b" ")
    assert not verify("other-secret", header, body)
    assert not verify(SECRET, sign(SECRET, now - 3600, body), body)
    assert not verify(SECRET, "garbage", body)


async def test_server_wide_webhook_hears_every_task(app_client, enqueued, llm, hook,
                                                    monkeypatch):
    # given a webhook configured for the whole server, and a task that names none
    monkeypatch.setenv("TASKBENCH_WEBHOOK_URL", hook.url)
    reset_settings()
    resp = await app_client.post("/tasks", json={"title": "plain", "complexity": 1})
    # when it ends
    await run_enqueued(enqueued)
    # then the server's webhook was told, signed
    assert [r["headers"]["Taskbench-Event"] for r in hook.received] == ["task.ended"]
    assert signed_by_secret(hook.received[0])
    assert json.loads(hook.received[0]["body"])["task"]["id"] == resp.json()["id"]
    # and a task naming the same URL itself is told once, not twice
    await app_client.post("/tasks", json={"title": "same", "complexity": 1,
                                          "notify": {"webhook": hook.url}})
    await run_enqueued(enqueued)
    assert len(hook.received) == 2

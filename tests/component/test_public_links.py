"""Absolute links everywhere a person clicks: the email and the PDF report point at the
dashboard's task page under TASKBENCH_PUBLIC_URL (default: where the API serves)."""

# ruff: noqa: F811  (pytest fixtures imported from deliver_fixtures are re-bound as arguments)
from __future__ import annotations

import email
import email.policy
import re
import socket
from pathlib import Path

import httpx
import pypdf
import pytest

from app.core.config import Settings, reset_settings
from app.core.db import session_scope
from app.integrations import enqueue_notifications
from app.integrations.outbox import flush_pending
from app.integrations.report import render_task_report
from app.models import Task
from app.tasks.lifecycle import EndedTask
from tests.factories.deliver import create_task, engine, settings  # noqa: F401

PUBLIC = "https://bench.example.com/tb"


def _with(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for key, value in env.items():
        monkeypatch.setenv(f"TASKBENCH_{key.upper()}", value)
    return reset_settings()


def _squash(text: str) -> str:
    return "".join(text.split())  # PDF text extraction wraps long URLs anywhere


def _pdf_links(path: Path) -> tuple[str, list[str]]:
    reader = pypdf.PdfReader(str(path))
    text = "\n".join(page.extract_text() or "" for page in reader.pages)
    uris = [str(annot.get_object()["/A"]["/URI"])
            for page in reader.pages for annot in page.get("/Annots") or []
            if "/URI" in annot.get_object().get("/A", {})]
    return text, uris


async def _mail_of(engine, settings: Settings) -> tuple[Task, email.message.EmailMessage]:
    task = await create_task(engine, settings, notify={"email": ["a@example.com"]})
    async with session_scope(engine) as session:
        await enqueue_notifications(session, EndedTask.of(await session.get(Task, task.id)))
    assert await flush_pending(10, settings=settings, engine=engine) == 1
    (eml,) = (settings.var_dir / "outbox").glob("*.eml")
    return task, email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)


async def _opens_dashboard_sign_in(path: str) -> bool:
    """A GET of `path` without a session is sent to the dashboard's sign-in (an API route would
    answer 401, an unknown one 404)."""
    from app.main import create_app

    transport = httpx.ASGITransport(app=create_app(sweeper=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        resp = await client.get(path)
    return resp.status_code == 303 and resp.headers["location"].startswith("/login")


def test_site_url_is_the_public_url_else_where_the_api_listens(monkeypatch):
    assert _with(monkeypatch, public_url=PUBLIC + "/").site_url == PUBLIC
    assert _with(monkeypatch, public_url="", host="127.0.0.1", port="8123").site_url == (
        "http://127.0.0.1:8123")
    # a wildcard listen address is not something a person can open: the machine's name is
    assert _with(monkeypatch, host="0.0.0.0", port="80").site_url == (
        f"http://{socket.gethostname()}:80")


async def test_email_links_open_the_dashboards_task_page(engine, settings, monkeypatch):
    # given a public URL and a task that ended with a recipient
    s = _with(monkeypatch, public_url=PUBLIC)
    # when its notification is composed and written
    task, msg = await _mail_of(engine, s)
    # then the text and the HTML carry absolute links to the dashboard's task page and report
    page, report = f"{PUBLIC}/tasks/{task.id}", f"{PUBLIC}/tasks/{task.id}/report.pdf"
    plain = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert page in plain and report in plain
    assert f'href="{page}"' in html and f'href="{report}"' in html
    assert "/api/v1/" not in plain + html
    assert await _opens_dashboard_sign_in(f"/tasks/{task.id}")
    assert await _opens_dashboard_sign_in(f"/tasks/{task.id}/report.pdf")


async def test_email_links_default_to_where_the_api_serves(engine, settings, monkeypatch):
    # given no public URL and the API on port 8765
    s = _with(monkeypatch, public_url="", host="127.0.0.1", port="8765")
    # when a notification is composed
    task, msg = await _mail_of(engine, s)
    # then its links are absolute, on that address
    assert f"http://127.0.0.1:8765/tasks/{task.id}" in msg.get_body(("plain",)).get_content()


async def test_pdf_report_links_are_absolute_dashboard_links(engine, settings, monkeypatch):
    # given a public URL and a task that left a file in output/
    s = _with(monkeypatch, public_url=PUBLIC)
    task = await create_task(engine, s)
    (Path(task.workspace) / "output" / "notes.txt").write_text("hello")
    # when its report is rendered
    path = await render_task_report(task.id, settings=s, engine=engine)
    # then the text shows the task page and the report link, and every link is absolute
    text, uris = _pdf_links(path)
    page = f"{PUBLIC}/tasks/{task.id}"
    assert page in _squash(text) and f"{page}/report.pdf" in _squash(text)
    assert page in uris and f"{page}/report.pdf" in uris
    assert f"{page}/files/notes.txt" in uris
    assert not [u for u in uris if not u.startswith(("https://", "http://", "#"))]
    assert await _opens_dashboard_sign_in(f"/tasks/{task.id}/files/notes.txt")


async def _signed_in_at(app_client, link_path: str) -> httpx.Response:
    """Follow an emailed link as a browser without a session: sign in, come back."""
    from app.main import create_app

    key = app_client.headers["Authorization"].split()[1]
    transport = httpx.ASGITransport(app=create_app(sweeper=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as browser:
        first = await browser.get(link_path)
        assert first.status_code == 303
        form = await browser.get(first.headers["location"])
        fields = dict(re.findall(r'name="(csrf|next)" value="([^"]*)"', form.text))
        done = await browser.post("/login", data={"api_key": key, **fields})
        assert done.status_code == 303, done.text
        return await browser.get(done.headers["location"])


async def test_a_link_opened_without_a_session_comes_back_to_its_page_after_sign_in(
    app_client, enqueued
):
    # given a task and its emailed link, opened in a browser that is not signed in
    task = (await app_client.post("/tasks", json={"title": "linked", "complexity": 2})).json()
    # when the person signs in on the page the link led to
    page = await _signed_in_at(app_client, f"/tasks/{task['id']}")
    # then they land on the task's page, not the task list
    assert page.status_code == 200 and "linked" in page.text
    assert f"/tasks/{task['id']}/report.pdf" in page.text


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example",
                                    "tasks", "/login?next=/x", "/ok\r\nSet-Cookie: a=b"])
def test_sign_in_never_sends_the_browser_elsewhere(target):
    from app.web.session import safe_next

    assert safe_next(target) == ""
    assert safe_next("/tasks/7?tab=files") == "/tasks/7?tab=files"


async def test_the_task_resource_carries_absolute_links(app_client, monkeypatch) -> None:
    from app.core.config import reset_settings

    monkeypatch.setenv("TASKBENCH_PUBLIC_URL", "https://tb.example.test/")
    reset_settings()
    made = (await app_client.post("/tasks", json={"title": "t", "complexity": 2})).json()
    assert made["links"] == {
        "dashboard": f"https://tb.example.test/tasks/{made['id']}",
        "report": f"https://tb.example.test/tasks/{made['id']}/report.pdf"}
    shown = (await app_client.get(f"/tasks/{made['id']}")).json()
    assert shown["links"] == made["links"]

"""Attacks on the API's file faces: REST and Agent Protocol artifact downloads, listings and
uploads, with links, hard links, FIFOs, sockets and devices planted in the task's workspace
from the host side, as the jail would leave them."""

from __future__ import annotations

import asyncio
import base64
import io
import os
from pathlib import Path

import httpx
import pypdf
import pytest

from app.core.db import session_scope
from app.models import Task
from app.sandbox.workspace import Workspace
from tests.conftest import auth
from tests.security.conftest import LEAF_KINDS, Host

T = 10.0  # seconds any request may take: a FIFO must never hold one


@pytest.fixture
async def task_ws(app_client: httpx.AsyncClient, tmp_path: Path) -> tuple[int, Workspace]:
    """A task of the admin with a workspace as the worker lays it out."""
    made = await app_client.post("/tasks", json={"title": "t", "description": "files"})
    assert made.status_code == 201, made.text
    task_id = made.json()["id"]
    ws = Workspace(tmp_path / "workspaces" / "agent" / str(task_id))
    ws.create(title="t", description="files")
    (ws.output / "report.txt").write_text("the agent's own output")
    (ws.root / "input").mkdir()
    async with session_scope() as session:
        task = await session.get(Task, task_id)
        assert task is not None
        task.workspace = str(ws.root)
        session.add(task)
    return task_id, ws


@pytest.fixture
async def ap(app_client: httpx.AsyncClient) -> httpx.AsyncClient:
    base = str(app_client.base_url).replace("/api/v1", "")
    async with httpx.AsyncClient(transport=app_client._transport, base_url=base,
                                 headers=auth(os.environ["TASKBENCH_ADMIN_API_KEY"])) as c:
        yield c


def _aid(path: str) -> str:
    return base64.urlsafe_b64encode(path.encode()).decode().rstrip("=")


def _no_leak(resp: httpx.Response, host: Host) -> None:
    assert host.secret not in resp.text
    assert resp.status_code in (404, 422), resp.status_code


async def _still_answers(client: httpx.AsyncClient, task_id: int) -> None:
    ok = await asyncio.wait_for(client.get(f"/tasks/{task_id}/artifacts/report.txt"), T)
    assert ok.status_code == 200 and ok.text == "the agent's own output"


# -- downloads -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", LEAF_KINDS)
async def test_rest_download_of_planted_output_file(app_client, task_ws, host, kind) -> None:
    task_id, ws = task_ws
    host.plant(ws.root, "output/evil.txt", kind)
    resp = await asyncio.wait_for(app_client.get(f"/tasks/{task_id}/artifacts/evil.txt"), T)
    _no_leak(resp, host)
    await _still_answers(app_client, task_id)


@pytest.mark.parametrize("kind", LEAF_KINDS)
async def test_ap_download_of_planted_output_file(app_client, ap, task_ws, host, kind) -> None:
    task_id, ws = task_ws
    host.plant(ws.root, "output/evil.txt", kind)
    url = f"/ap/v1/agent/tasks/{task_id}/artifacts/{_aid('output/evil.txt')}"
    _no_leak(await asyncio.wait_for(ap.get(url), T), host)
    await _still_answers(app_client, task_id)


@pytest.mark.parametrize("kind", LEAF_KINDS)
async def test_ap_download_of_planted_input_file(app_client, ap, task_ws, host, kind) -> None:
    task_id, ws = task_ws
    host.plant(ws.root, "input/data.csv", kind)
    url = f"/ap/v1/agent/tasks/{task_id}/artifacts/{_aid('input/data.csv')}"
    _no_leak(await asyncio.wait_for(ap.get(url), T), host)
    await _still_answers(app_client, task_id)


@pytest.mark.parametrize("face", ["rest", "ap"])
@pytest.mark.parametrize("how", ["output-is-link", "intermediate-dir-link", "other-task-link",
                                 "service-database-link"])
async def test_download_through_linked_folders(app_client, ap, task_ws, host, tmp_path,
                                               face, how) -> None:
    task_id, ws = task_ws
    rel = "secret.txt"
    if how == "output-is-link":
        host.plant(ws.root, "output", "symlink", host.root)
    elif how == "intermediate-dir-link":
        host.plant(ws.root, "output/deep", "symlink", host.root)
        rel = "deep/secret.txt"
    elif how == "other-task-link":
        other = Workspace(tmp_path / "workspaces" / "agent" / "999")
        other.create(title="other user's task", description="")
        (other.output / "secret.txt").write_text(host.secret)
        host.plant(ws.root, "output/deep", "symlink", other.output)
        rel = "deep/secret.txt"
    else:  # the service's own SQLite database, full of keys and other users' tasks
        db = Path(os.environ["TASKBENCH_DATABASE_URL"].split("///", 1)[1])
        host.plant(ws.root, "output/secret.txt", "symlink", db)
    if face == "rest":
        resp = await app_client.get(f"/tasks/{task_id}/artifacts/{rel}")
    else:
        resp = await ap.get(f"/ap/v1/agent/tasks/{task_id}/artifacts/{_aid('output/' + rel)}")
    _no_leak(resp, host)
    assert b"SQLite format" not in resp.content


@pytest.mark.parametrize("path", ["../README.md", "..%2fREADME.md", "%2e%2e/%2e%2e/etc/passwd",
                                  "/etc/passwd", "sub/../../README.md", "..\\..\\etc\\passwd"])
async def test_rest_download_traversal(app_client, task_ws, host, path) -> None:
    task_id, _ = task_ws
    resp = await app_client.get(f"/tasks/{task_id}/artifacts/{path}")
    assert resp.status_code == 404 and "root:" not in resp.text and "# t" not in resp.text


@pytest.mark.parametrize("path", ["output/../README.md", "input/../../../etc/passwd",
                                  "output//etc/passwd", "/etc/passwd", "README.md"])
async def test_ap_download_traversal(ap, task_ws, host, path) -> None:
    task_id, _ = task_ws
    resp = await ap.get(f"/ap/v1/agent/tasks/{task_id}/artifacts/{_aid(path)}")
    assert resp.status_code == 404 and "root:" not in resp.text and "# t" not in resp.text


# -- listings --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", [*LEAF_KINDS, "dirlink"])
async def test_rest_listing_hides_planted_entries(app_client, task_ws, host, kind) -> None:
    task_id, ws = task_ws
    if kind == "dirlink":
        host.plant(ws.root, "output/hostdir", "symlink", host.root)
    else:
        host.plant(ws.root, "output/evil.txt", kind)
    resp = await asyncio.wait_for(app_client.get(f"/tasks/{task_id}/artifacts"), T)
    assert resp.status_code == 200
    assert [f["path"] for f in resp.json()] == ["report.txt"]


@pytest.mark.parametrize("kind", [*LEAF_KINDS, "input-is-link"])
async def test_ap_listing_hides_planted_entries(ap, task_ws, host, kind) -> None:
    task_id, ws = task_ws
    (ws.root / "input" / "mine.csv").write_text("a,b")
    if kind == "input-is-link":
        host.plant(ws.root, "input", "symlink", host.root)
    else:
        host.plant(ws.root, "input/evil.csv", kind)
    resp = await asyncio.wait_for(ap.get(f"/ap/v1/agent/tasks/{task_id}/artifacts"), T)
    names = {a["file_name"] for a in resp.json()["artifacts"]}
    assert "secret.txt" not in names and "evil.csv" not in names
    assert "report.txt" in names


async def test_rest_listing_of_linked_output_is_empty(app_client, task_ws, host) -> None:
    task_id, ws = task_ws
    host.plant(ws.root, "output", "symlink", host.root)
    resp = await app_client.get(f"/tasks/{task_id}/artifacts")
    assert resp.status_code == 200 and resp.json() == []


# -- uploads ---------------------------------------------------------------------------------

async def _upload(client, face: str, task_id: int, name: str, body: bytes) -> httpx.Response:
    files = {"file" if face == "ap" else "files": (name, body, "text/plain")}
    url = f"/ap/v1/agent/tasks/{task_id}/artifacts" if face == "ap" else f"/tasks/{task_id}/files"
    return await asyncio.wait_for(client.post(url, files=files), T)


@pytest.mark.parametrize("face", ["rest", "ap"])
@pytest.mark.parametrize("kind", LEAF_KINDS)
async def test_upload_onto_planted_input_name(app_client, ap, task_ws, host, face,
                                              kind) -> None:
    task_id, ws = task_ws
    host.plant(ws.root, "input/notes.txt", kind)
    resp = await _upload(ap if face == "ap" else app_client, face, task_id, "notes.txt",
                         b"user data")
    assert resp.status_code in (200, 201), resp.text
    saved = ws.root / "input" / "notes.txt"  # the planted entry was replaced, not written through
    assert not saved.is_symlink() and saved.read_bytes() == b"user data"
    assert saved.stat().st_nlink == 1


@pytest.mark.parametrize("face", ["rest", "ap"])
async def test_upload_into_linked_input_folder(app_client, ap, task_ws, host, face) -> None:
    task_id, ws = task_ws
    host.plant(ws.root, "input", "symlink", host.root)
    resp = await _upload(ap if face == "ap" else app_client, face, task_id, "planted.txt", b"x")
    assert resp.status_code == 409 and "symlink" in resp.text
    assert not (host.root / "planted.txt").exists()


@pytest.mark.parametrize("face", ["rest", "ap"])
@pytest.mark.parametrize("name", ["../../../host/planted.txt", "x" * 300 + ".txt",
                                  "/etc/cron.d/planted.txt"])
async def test_upload_hostile_names(app_client, ap, task_ws, host, face, name) -> None:
    task_id, ws = task_ws
    resp = await _upload(ap if face == "ap" else app_client, face, task_id, name, b"x")
    assert resp.status_code in (201, 200, 422), resp.text
    assert not (host.root / "planted.txt").exists()
    assert all(p.parent == ws.root / "input" for p in (ws.root / "input").iterdir())


# -- report.pdf --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["symlink", "hardlink", "fifo"])
async def test_report_pdf_with_planted_plan_and_image(app_client, task_ws, host, kind) -> None:
    task_id, ws = task_ws
    host.plant(ws.root, "PLAN.md", kind)
    host.plant(ws.root, "output/chart.png", "symlink", host.root / "image.png")
    resp = await asyncio.wait_for(app_client.get(f"/tasks/{task_id}/report.pdf"), 120)
    assert resp.status_code == 200 and resp.content.startswith(b"%PDF")
    reader = pypdf.PdfReader(io.BytesIO(resp.content))
    text = "".join(page.extract_text() or "" for page in reader.pages)
    assert host.secret not in text and "chart.png" not in text
    await _still_answers(app_client, task_id)

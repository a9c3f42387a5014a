"""Attacks on what the worker does with workspace files as root: the README checklist, the
shared-workspace lock, fetch_url's saved pages, subtask result copies, PR staging, the venv
and pip's shebang fix, reports, email attachments, the size walk and the file tools. Every
attack plants from the host side what the jail could leave, then runs the real consumer."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import app.tools  # noqa: F401  (registers the tools)
from app.core.config import Settings
from app.integrations import gitops
from app.integrations import report_data as rd
from app.integrations.email import compose_agent_mail
from app.integrations.outbox_send import _read_attachment
from app.integrations.pdf import ResourceRefused, SafeFetcher
from app.models import Task
from app.run.agent.delegation import _copy_outputs
from app.sandbox import fs
from app.sandbox.ownership import hand_over
from app.sandbox.venv import create_venv, venv_is_plain
from app.sandbox.workspace import Workspace
from app.tools.packages import _fix_shebangs
from app.tools.registry import dispatch
from tests.fakes.tool_context import make_context
from tests.fakes.web_server import WebServer
from tests.security.conftest import LEAF_KINDS, Host, no_hang

ANY_KIND = [*LEAF_KINDS, "dir"]


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    w = Workspace(tmp_path / "ws")
    w.create(title="t", description="d")
    return w


def _plain_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink() and path.stat().st_nlink == 1


# -- README checklist, lock file ---------------------------------------------------------------

@pytest.mark.parametrize("kind", ANY_KIND)
def test_readme_rewrite_onto_planted_readme(ws: Workspace, host: Host, kind: str) -> None:
    host.plant(ws.root, "README.md", kind)
    with no_hang():
        ws.write_readme(title="t", description="d", done=["design"])
    if kind != "dir":  # the planted entry was replaced; a folder of that name is left alone
        assert _plain_file(ws.readme) and "- [x] Design" in ws.readme.read_text()


@pytest.mark.parametrize("kind", ANY_KIND)
async def test_shared_lock_onto_planted_lock_file(ws: Workspace, host: Host, kind: str) -> None:
    host.plant(ws.root, ".taskbench.lock", kind)
    with no_hang():
        ws.mark_shared()
        async with ws.lock():
            pass
    assert ws.shared and _plain_file(ws.lock_file)


# -- fetch_url saving into research/ ------------------------------------------------------------

@pytest.fixture
def web():
    srv = WebServer().start()
    yield srv
    srv.stop()


def _fetch_ctx(tmp_path: Path, web: WebServer):
    settings = Settings(var_dir=tmp_path / "var", fetch_allow_hosts=[f"127.0.0.1:{web.port}"])
    return make_context(tmp_path / "ws", settings=settings)[0]


@pytest.mark.parametrize("where", ["research-is-link", "research-is-file-link"])
async def test_fetch_save_into_linked_research(tmp_path, web, host, where) -> None:
    ctx = _fetch_ctx(tmp_path, web)
    shutil.rmtree(ctx.workspace.research)
    if where == "research-is-link":
        host.plant(ctx.workspace.root, "research", "symlink", host.root)
    else:
        host.plant(ctx.workspace.root, "research", "symlink")
    out = await dispatch(ctx, "fetch_url", {"url": web.url("/article")}, None)
    assert out.refused and "symlink" in out.output


@pytest.mark.parametrize("kind", LEAF_KINDS)
async def test_fetch_save_onto_predicted_name(tmp_path, web, host, kind) -> None:
    ctx = _fetch_ctx(tmp_path, web)
    host.plant(ctx.workspace.root, "research/002-bubblewrap-notes.txt", kind)
    with no_hang():
        out = await dispatch(ctx, "fetch_url", {"url": web.url("/article")}, None)
    saved = ctx.workspace.research / "002-bubblewrap-notes.txt"  # the planted one counts
    assert out.ok and _plain_file(saved) and "Jails" in saved.read_text()


# -- subtask result copies into the parent ---------------------------------------------------

def _child(tmp_path: Path) -> tuple[Task, Workspace]:
    child = Workspace(tmp_path / "child")
    child.create(title="c", description="")
    (child.output / "result.md").write_text("child result")
    return Task(id=7, title="c", workspace=str(child.root)), child


@pytest.mark.parametrize("kind", LEAF_KINDS)
def test_subtask_copy_of_planted_child_output(tmp_path, ws, host, kind) -> None:
    task, child = _child(tmp_path)
    host.plant(child.root, "output/evil.txt", kind)
    with no_hang():
        copied = _copy_outputs(task, ws.root)
    assert copied == ["subtasks/7/result.md"]
    assert sorted(p.name for p in (ws.root / "subtasks" / "7").iterdir()) == ["result.md"]


@pytest.mark.parametrize("where", ["child-output-is-link", "parent-subtasks-is-link",
                                   "parent-subtask-id-is-link", "child-output-sub-is-link"])
def test_subtask_copy_through_linked_folders(tmp_path, ws, host, where) -> None:
    task, child = _child(tmp_path)
    if where == "child-output-is-link":
        host.plant(child.root, "output", "symlink", host.root)
    elif where == "child-output-sub-is-link":
        host.plant(child.root, "output/sub", "symlink", host.root)
    elif where == "parent-subtasks-is-link":
        host.plant(ws.root, "subtasks", "symlink", host.root)
    else:
        host.plant(ws.root, "subtasks/7", "symlink", host.root)
    copied = _copy_outputs(task, ws.root)
    assert not any(host.secret in p.read_text(errors="replace")
                   for p in ws.root.rglob("*") if _plain_file(p))
    assert all("secret" not in c for c in copied)


# -- PR staging (host git commits a copy of src/) --------------------------------------------

@pytest.mark.parametrize("kind", LEAF_KINDS)
def test_pr_staging_of_planted_src_file(tmp_path, ws, host, kind) -> None:
    (ws.src / "main.py").write_text("print('hi')\n")
    host.plant(ws.root, "src/leak.txt", kind)
    dest = tmp_path / "stage"
    with no_hang():
        skipped = gitops.stage_tree(ws.root, "src", dest)
    assert skipped == ["leak.txt"]
    assert sorted(p.name for p in dest.rglob("*")) == ["main.py"]


@pytest.mark.parametrize("where", ["src-is-link", "src-subdir-is-link", "src-git-is-link"])
def test_pr_staging_through_linked_folders(tmp_path, ws, host, where) -> None:
    dest = tmp_path / "stage"
    if where == "src-is-link":
        shutil.rmtree(ws.src)
        host.plant(ws.root, "src", "symlink", host.root)
        with pytest.raises(fs.NotAllowed):
            gitops.stage_tree(ws.root, "src", dest)
        return
    host.plant(ws.root, "src/lib" if where == "src-subdir-is-link" else "src/.git", "symlink",
               host.root)
    gitops.stage_tree(ws.root, "src", dest)
    assert not any(host.secret in p.read_text() for p in dest.rglob("*") if p.is_file())


# -- the venv on resume and pip's shebang fix -------------------------------------------------

@pytest.mark.parametrize("where", [".venv", ".venv/bin", ".venv/lib/python3/site-packages"])
def test_resume_with_host_linked_venv(ws, host, where) -> None:
    if where != ".venv":
        create_venv(ws.venv)
        shutil.rmtree(ws.root / where, ignore_errors=True)
    host.plant(ws.root, where, "symlink", host.root)
    with no_hang(60):
        made = create_venv(ws.venv)
    assert made != "existing" and venv_is_plain(ws.root)
    assert not ws.venv.is_symlink() and (ws.venv / "pyvenv.cfg").is_file()


@pytest.mark.parametrize("kind", LEAF_KINDS)
def test_shebang_fix_onto_planted_script(ws, host, kind) -> None:
    (ws.venv / "bin").mkdir(parents=True)
    (ws.venv / "bin" / "mine").write_text("#!/usr/bin/python3\nprint(1)\n")
    host.plant(ws.root, ".venv/bin/tool", kind, host.root / "tool")
    with no_hang():
        _fix_shebangs(ws.venv, "/usr/bin/python3")  # a prefix: its bin/ is rewritten
    assert (ws.venv / "bin" / "mine").read_text().startswith("#!/workspace/.venv/bin/python\n")


# -- reports and email attachments ---------------------------------------------------------------

@pytest.mark.parametrize("kind", LEAF_KINDS)
def test_report_plan_from_planted_plan_md(ws, host, kind) -> None:
    host.plant(ws.root, "PLAN.md", kind)
    task = Task(id=1, title="t")
    with no_hang():
        assert rd.plan(task, [], ws.root) == ""


@pytest.mark.parametrize("kind", [*LEAF_KINDS, "dirlink"])
def test_report_file_list_and_images_skip_planted(ws, host, kind) -> None:
    (ws.output / "chart.png").write_bytes(b"png")
    if kind == "dirlink":
        host.plant(ws.root, "output/host", "symlink", host.root)
    else:
        host.plant(ws.root, "output/evil.png", kind, host.root / "image.png")
    files, images = rd.output_files(ws.root, lambda rel: f"http://x/artifacts/{rel}")
    assert [f["path"] for f in files] == ["output/chart.png"] and images == ["output/chart.png"]


@pytest.mark.parametrize("kind", LEAF_KINDS)
def test_report_image_fetcher_refuses_planted(ws, host, kind) -> None:
    host.plant(ws.root, "output/evil.png", kind, host.root / "image.png")
    fetcher = SafeFetcher([ws.root])
    with no_hang(), pytest.raises(ResourceRefused):
        fetcher.fetch((ws.output / "evil.png").as_uri())


@pytest.mark.parametrize("where", ["pdf-name-link", "old-temp-name-link", "output-is-link"])
async def test_make_report_onto_planted_names(tmp_path, host, where) -> None:
    ctx, _ = make_context(tmp_path / "ws")
    out = ctx.workspace.output
    if where == "pdf-name-link":
        host.plant(ctx.workspace.root, "output/findings.pdf", "symlink")
    elif where == "old-temp-name-link":
        for pid in range(os.getpid() - 2, os.getpid() + 3):
            host.plant(ctx.workspace.root, f"output/.findings.pdf.{pid}.tmp", "symlink")
    else:
        shutil.rmtree(out)
        host.plant(ctx.workspace.root, "output", "symlink", host.root)
    res = await dispatch(ctx, "make_report", {"title": "Findings", "markdown": "# Hi"}, None)
    if where == "output-is-link":
        assert res.refused
    else:
        assert res.ok and (out / "findings.pdf").read_bytes().startswith(b"%PDF")


@pytest.mark.parametrize("kind", [*LEAF_KINDS, "dirlink"])
async def test_send_email_attaching_planted(tmp_path, host, kind) -> None:
    ctx, _ = make_context(tmp_path / "ws")
    ctx.task = {"notify": {"email": ["me@example.com"]}}
    rel = "output/evil.txt"
    if kind == "dirlink":
        host.plant(ctx.workspace.root, "output/d", "symlink", host.root)
        rel = "output/d/secret.txt"
    else:
        host.plant(ctx.workspace.root, rel, kind)
    with no_hang():
        res = await dispatch(ctx, "send_email", {"to": "me@example.com", "subject": "s",
                                                 "body": "b", "attach": [rel]}, None)
    assert res.refused


@pytest.mark.parametrize("kind", LEAF_KINDS)
def test_email_attachment_swapped_after_queueing(ws, host, kind) -> None:
    (ws.output / "a.txt").write_text("fine")
    assert _read_attachment(ws.root, "output/a.txt", 1000) == b"fine"
    host.plant(ws.root, "output/a.txt", kind)  # swapped between send_email and the send
    with no_hang():
        data = _read_attachment(ws.root, "output/a.txt", 1000)
    assert data is None
    msg = compose_agent_mail(Settings(), to="me@example.com", msg_id="<tb.1.agent.x@t>",
                             subject="s", body="b", attachments=[("a.txt", data)])
    assert host.secret not in msg.as_string() and "left out" in msg.as_string()


# -- the size walk and ownership hand-over ------------------------------------------------------

@pytest.mark.parametrize("kind", ["dirlink", "hardlink", "symlink"])
def test_size_walk_and_chown_with_planted_links(ws, host, kind) -> None:
    (host.root / "big.bin").write_bytes(b"x" * 4_000_000)
    host_before = host.snapshot()
    if kind == "dirlink":
        host.plant(ws.root, "src/host", "symlink", host.root)
    else:
        host.plant(ws.root, "src/evil", kind)
    used = hand_over(ws.root, 65534, 65534)  # a fresh workspace: the full walk
    assert used is not None and used < 3_000_000  # the host's 4 MB were not walked into
    assert host.snapshot() == host_before  # owners of host files unchanged
    assert (ws.readme.stat().st_uid, ws.src.stat().st_uid) == (65534, 65534)
    (host.root / "big.bin").unlink()


# -- the file tools -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", LEAF_KINDS)
async def test_read_file_of_planted(tmp_path, host, kind) -> None:
    ctx, _ = make_context(tmp_path / "ws")
    host.plant(ctx.workspace.root, "src/evil.txt", kind)
    with no_hang():
        res = await dispatch(ctx, "read_file", {"path": "src/evil.txt"}, None)
    assert res.refused and host.secret not in res.output


@pytest.mark.parametrize("tool", ["read_file", "write_file", "list_files", "run_python"])
async def test_file_tools_through_linked_folder(tmp_path, host, tool) -> None:
    ctx, _ = make_context(tmp_path / "ws")
    host.plant(ctx.workspace.root, "src/lib", "symlink", host.root)
    host.plant(ctx.workspace.root, ".taskbench", "symlink", host.root)
    args = {"read_file": {"path": "src/lib/secret.txt"},
            "write_file": {"path": "src/lib/planted.txt", "content": "x"},
            "list_files": {"path": "src/lib"},
            "run_python": {"code": "print(1)"}}[tool]
    res = await dispatch(ctx, tool, args, None)
    assert res.refused and host.secret not in res.output

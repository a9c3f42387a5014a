"""The same attacks, planted for real from inside the jail with run_command, then handed to
the host consumers: nothing the jail leaves is followed, opened as a FIFO or read twice-linked."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi import HTTPException

import app.tools  # noqa: F401  (registers the tools)
from app.api.artifacts import file_response
from app.integrations import gitops
from app.models import Task
from app.run.agent.delegation import _copy_outputs
from app.sandbox.venv import create_venv, venv_is_plain
from app.sandbox.workspace import Workspace
from app.tools.registry import dispatch
from tests.fakes.tool_context import make_context
from tests.security.conftest import Host, no_hang

pytestmark = pytest.mark.skipif(not shutil.which("bwrap"), reason="bubblewrap not installed")


async def jailed_py(ctx, code: str) -> None:
    out = await dispatch(ctx, "run_command", {"command": f'python3 -c "{code}"'}, None)
    assert out.ok and out.data.get("exit_code") == 0, out.output
    assert out.data.get("sandbox") == "bwrap", "these attacks are about what bwrap leaves"


async def test_jail_symlink_to_host_file_served_nowhere(tmp_path: Path, host: Host) -> None:
    ctx, _ = make_context(tmp_path / "ws")
    await jailed_py(ctx, f"__import__('os').symlink('{host.file}', 'output/leak.txt')")
    assert (ctx.workspace.output / "leak.txt").is_symlink()
    res = await dispatch(ctx, "read_file", {"path": "output/leak.txt"}, None)
    assert res.refused and host.secret not in res.output
    with pytest.raises(HTTPException) as err:
        file_response(ctx.workspace.root, "output/leak.txt", "leak.txt")
    assert err.value.status_code == 404


async def test_jail_fifo_never_blocks_a_read(tmp_path: Path, host: Host) -> None:
    ctx, _ = make_context(tmp_path / "ws")
    await jailed_py(ctx, "__import__('os').mkfifo('output/pipe.txt')")
    with no_hang():
        res = await dispatch(ctx, "read_file", {"path": "output/pipe.txt"}, None)
        copied = _copy_outputs(Task(id=3, workspace=str(ctx.workspace.root)),
                               tmp_path / "parent")
    assert res.refused and copied == []


async def test_jail_hard_link_is_not_read(tmp_path: Path, host: Host) -> None:
    ctx, _ = make_context(tmp_path / "ws")
    (ctx.workspace.output / "a.txt").write_text("agent data")
    await jailed_py(ctx, "__import__('os').link('output/a.txt', 'output/b.txt')")
    res = await dispatch(ctx, "read_file", {"path": "output/b.txt"}, None)
    assert res.refused and "hard links" in res.output


async def test_jail_readme_link_is_replaced_not_written_through(tmp_path, host: Host) -> None:
    ctx, _ = make_context(tmp_path / "ws")
    await jailed_py(ctx, "__import__('os').remove('README.md')")
    await jailed_py(ctx, f"__import__('os').symlink('{host.file}', 'README.md')")
    ctx.workspace.write_readme(title="t", description="d", done=["design"])
    assert not ctx.workspace.readme.is_symlink()


async def test_jail_src_dir_link_is_not_staged(tmp_path: Path, host: Host) -> None:
    ctx, _ = make_context(tmp_path / "ws")
    (ctx.workspace.src / "main.py").write_text("print(1)\n")
    await jailed_py(ctx, f"__import__('os').symlink('{host.root}', 'src/lib')")
    skipped = gitops.stage_tree(ctx.workspace.root, "src", tmp_path / "stage")
    assert skipped == ["lib"] and not (tmp_path / "stage" / "lib").exists()


async def test_jail_venv_link_is_rebuilt_on_resume(tmp_path: Path, host: Host) -> None:
    ctx, _ = make_context(tmp_path / "ws")
    # (the task's venv is there: its first command made it) swapped for a link to the host
    await jailed_py(ctx, f"__import__('shutil').rmtree('.venv'); "
                         f"__import__('os').symlink('{host.root}', '.venv')")
    ws = Workspace(ctx.workspace.root)
    assert create_venv(ws.venv) != "existing" and venv_is_plain(ws.root)

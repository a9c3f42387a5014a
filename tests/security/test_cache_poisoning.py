"""Packages: the shared uv cache cannot be poisoned, and a wheel's code never runs on the host.

The attack from issue 11: a venv file hard-linked into uv's cache was chowned to the sandbox
uid, changed by one task and then imported by another user's task."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import stat
import zipfile
from pathlib import Path

import pytest

import app.tools  # noqa: F401  (registers the tools)
from app.core.config import Settings
from app.sandbox.venv import uv_binary
from app.tools.registry import dispatch
from tests.fakes.tool_context import make_context
from tests.security.sandbox_support import NEEDS_BWRAP, ROOT_ONLY, jailed, workspace

pytestmark = [NEEDS_BWRAP, ROOT_ONLY,
              pytest.mark.skipif(not uv_binary(), reason="uv is not installed")]


def _wheel(dest: Path, marker: str) -> Path:
    """A real wheel `tbpoison` whose .pth writes `marker` whenever an interpreter starts."""
    files = {
        "tbpoison/__init__.py": "VALUE = 'genuine'\n",
        "tbpoison-startup.pth": f"import os; open({marker!r}, 'w').write('ran')\n",
        "tbpoison-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: tbpoison\n"
                                           "Version: 1.0\n",
        "tbpoison-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\n"
                                        "Root-Is-Purelib: true\nTag: py3-none-any\n",
        "tbpoison-1.0.dist-info/entry_points.txt": "[console_scripts]\ntbpoison = tbpoison:m\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(text.encode())}")
    record.append("tbpoison-1.0.dist-info/RECORD,,")
    files["tbpoison-1.0.dist-info/RECORD"] = "\n".join(record) + "\n"
    path = dest / "tbpoison-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


@pytest.fixture
def local_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """uv pointed at a folder of wheels instead of an index (the host's own index settings)."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    marker = f"/tmp/tb-pth-ran-{secrets.token_hex(6)}"  # noqa: S108 - the host's own /tmp
    _wheel(wheels, marker)
    monkeypatch.setenv("UV_FIND_LINKS", str(wheels))
    monkeypatch.setenv("UV_NO_INDEX", "1")
    yield marker
    Path(marker).unlink(missing_ok=True)


async def _install(tmp_path: Path, name: str):
    ctx, events = make_context(tmp_path / name, settings=Settings(var_dir=tmp_path / "var"))
    out = await dispatch(ctx, "pip_install", {"packages": ["tbpoison==1.0"]}, None)
    assert out.ok, out.output
    return ctx


async def test_installed_files_share_no_inode_with_the_cache(tmp_path: Path,
                                                             local_index: str) -> None:
    ctx = await _install(tmp_path, "ws")
    cache = tmp_path / "var" / "uv-cache"
    cache_inodes = {(st.st_dev, st.st_ino) for st in _stats(cache) if stat.S_ISREG(st.st_mode)}
    venv_files = [st for st in _stats(ctx.workspace.venv) if stat.S_ISREG(st.st_mode)]
    assert cache_inodes and venv_files
    assert not cache_inodes & {(st.st_dev, st.st_ino) for st in venv_files}
    assert all(st.st_nlink == 1 for st in venv_files)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700 and cache.stat().st_uid == 0


async def test_a_task_cannot_change_what_the_next_task_imports(tmp_path: Path,
                                                               local_index: str) -> None:
    # given task A installed the package and tries to poison every copy it can reach
    a = await _install(tmp_path, "a")
    # (every mount the jail shows, its own venv included: -xdev would stop at /workspace)
    res = await jailed(a.workspace, "sh", "-c",
                       "for f in $(find / -path /proc -prune -o -path '*tbpoison/__init__.py' "
                       "-print 2>/dev/null); do echo \"VALUE = 'poisoned'\" > $f && "
                       "echo poisoned $f; done; echo done")
    assert "done" in res.output
    assert "poisoned /workspace/.venv/" in res.output, res.output  # the attack did run
    res = await jailed(a.workspace, "python", "-c", "import tbpoison; print(tbpoison.VALUE)")
    assert res.output.strip().endswith("poisoned"), res.output
    # when task B installs the same package (from the same cache)
    b = await _install(tmp_path, "b")
    res = await jailed(b.workspace, "python", "-c", "import tbpoison; print(tbpoison.VALUE)")
    # then B imports the genuine module, and no cache file belongs to a task uid
    assert res.output.strip().endswith("genuine"), res.output
    assert all(st.st_uid == 0 for st in _stats(tmp_path / "var" / "uv-cache"))


async def test_a_planted_hard_link_into_the_cache_is_never_handed_to_a_task(
        tmp_path: Path) -> None:
    # given a cache file hard-linked into a task's venv (uv's default link mode)
    cache_file = tmp_path / "cache-module.py"
    cache_file.write_text("VALUE = 'genuine'\n")
    with workspace() as ws:
        site = ws.venv / "lib" / "site-packages"
        site.mkdir(parents=True)
        os.link(cache_file, site / "module.py")
        # when the task runs a command that rewrites it
        res = await jailed(ws, "sh", "-c", "echo poisoned > .venv/lib/site-packages/module.py")
    # then the shared inode was not chowned and cannot be written from the jail
    assert res.exit_code != 0
    assert cache_file.stat().st_uid == 0 and cache_file.read_text() == "VALUE = 'genuine'\n"


async def test_a_wheels_pth_never_runs_on_the_host(tmp_path: Path, local_index: str) -> None:
    ctx = await _install(tmp_path, "ws")
    assert not Path(local_index).exists()  # uv ran on the host: nothing imported the package
    # it is real code though: an interpreter in the jail runs it (into the jail's own /tmp)
    res = await jailed(ctx.workspace, "python", "-c",
                       f"import os; print('ran-in-jail', os.path.exists({local_index!r}))")
    assert "ran-in-jail True" in res.output, res.output
    assert not Path(local_index).exists()


async def test_the_cache_is_invisible_from_the_jail(tmp_path: Path, local_index: str) -> None:
    ctx = await _install(tmp_path, "ws")
    cache = tmp_path / "var" / "uv-cache"
    res = await jailed(ctx.workspace, "ls", str(cache))
    assert res.exit_code != 0


async def test_a_symlinked_site_packages_never_leads_the_host_outside(
        tmp_path: Path, local_index: str) -> None:
    # given a venv whose site-packages the task replaced by a link to a host folder
    ctx, _ = make_context(tmp_path / "ws", settings=Settings(var_dir=tmp_path / "var"))
    host_dir = tmp_path / "host-dir"
    host_dir.mkdir()
    await dispatch(ctx, "run_command", {"command": "python -c \"print(1)\""}, None)
    from app.sandbox.venv import create_venv

    create_venv(ctx.workspace.venv)
    site = next(ctx.workspace.venv.glob("lib/python*/site-packages"))
    shutil.rmtree(site)
    site.symlink_to(host_dir)
    # when packages are installed
    await dispatch(ctx, "pip_install", {"packages": ["tbpoison==1.0"]}, None)
    # then nothing was written into the host folder
    assert list(host_dir.iterdir()) == []


async def test_console_scripts_point_at_the_venv_and_belong_to_the_task(
        tmp_path: Path, local_index: str) -> None:
    ctx = await _install(tmp_path, "ws")
    script = ctx.workspace.venv / "bin" / "tbpoison"
    assert script.read_text().startswith("#!/workspace/.venv/bin/python\n")
    assert script.stat().st_uid == ctx.workspace.root.stat().st_uid != 0
    assert not list(ctx.workspace.root.glob(".pip-stage-*"))


def _stats(top: Path) -> list[os.stat_result]:
    out = []
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            out.append(os.lstat(os.path.join(dirpath, name)))
    return out

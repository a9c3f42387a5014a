"""The jail itself: namespaces, uid, limits, output capping, modes, self-test, host-side git."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from app.core.config import Settings
from app.sandbox import probe
from app.sandbox.capture import Capture
from app.sandbox.jail import (
    SandboxUnavailable,
    run_jailed,
    sandbox_mode,
)
from app.sandbox.limits import Limits, WorkspaceTooBig
from app.sandbox.selftest import run_selftest
from app.sandbox.venv import create_venv
from app.sandbox.workspace import PathRefused, Workspace

pytestmark = pytest.mark.skipif(not shutil.which("bwrap"), reason="bubblewrap not installed")
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="uid switching needs root")


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    w = Workspace(tmp_path / "ws")
    w.create(title="t", description="d")
    return w


async def run(ws: Workspace, *argv: str, settings: Settings | None = None, **kw):
    return await run_jailed(list(argv), workspace=ws, settings=settings or Settings(),
                            timeout=kw.pop("timeout", 20), **kw)


async def test_true_runs_in_bwrap_with_figures(ws: Workspace) -> None:
    res = await run(ws, "true")
    assert (res.exit_code, res.sandbox, res.timed_out) == (0, "bwrap", False)
    assert res.duration_ms > 0 and res.peak_rss_kb > 0 and res.cpu_s >= 0
    assert set(res.data()) >= {"exit_code", "cpu_s", "peak_rss_kb", "duration_ms", "sandbox"}


@ROOT_ONLY
async def test_unprivileged_uid_no_caps_and_files_owned_by_sandbox_uid(ws: Workspace) -> None:
    res = await run(ws, "python3", "-c",
                    "import os;print(os.getuid());open('made.txt','w').write('x');"
                    "print([l for l in open('/proc/self/status') if l.startswith('Cap')])")
    assert res.exit_code == 0, res.output
    uid = int(res.output.splitlines()[0])
    s = Settings()
    assert s.sandbox_uid_base <= uid < s.sandbox_uid_base + s.sandbox_uid_count
    assert "0000000000000000" in res.output and "ffff" not in res.output
    assert (ws.root / "made.txt").stat().st_uid == uid


async def test_only_usr_python_and_workspace_visible(ws: Workspace) -> None:
    res = await run(ws, "ls", "-a", "/", "/root", "/tmp")
    listing = set(res.output.split())
    assert "workspace" in listing and "home" not in listing and "etc" not in listing
    assert ".ssh" not in listing
    res = await run(ws, "ls", "/var/run/docker.sock", "/etc/shadow", "/home")
    assert res.exit_code != 0


async def test_no_network_inside(ws: Workspace) -> None:
    res = await run(ws, "python3", "-c",
                    "import socket;s=socket.socket();s.settimeout(2);"
                    "s.connect(('127.0.0.1',6379))")
    assert res.exit_code != 0
    assert "ConnectionRefused" in res.output or "unreachable" in res.output.lower()


async def test_venv_python_runs_inside(ws: Workspace) -> None:
    create_venv(ws.venv)
    res = await run(ws, "python", "-c", "import sys;print(sys.prefix)")
    assert res.exit_code == 0, res.output
    assert res.output.strip() == "/workspace/.venv"


async def test_timeout_kills_and_reports(ws: Workspace) -> None:
    res = await run(ws, "python3", "-c", "import time;time.sleep(60)", timeout=1)
    assert res.timed_out and "timed out" in res.output
    assert res.duration_ms < 5000


async def test_cpu_limit_soft_below_hard(ws: Workspace) -> None:
    res = await run(ws, "python3", "-c", "while True: pass", limits=Limits(cpu_s=1))
    assert res.exit_code != 0 and not res.timed_out
    assert res.cpu_s < 8


async def test_file_size_limit(ws: Workspace) -> None:
    res = await run(ws, "python3", "-c",
                    "open('big','wb').write(b'x'*(8*1024*1024))",
                    limits=Limits(file_size_bytes=1024 * 1024))
    assert res.exit_code != 0
    assert (ws.root / "big").stat().st_size <= 1024 * 1024


async def test_output_is_capped_head_and_tail_kept(ws: Workspace) -> None:
    script = "print('FIRST');print('x'*3_000_000);print('LAST')"
    res = await run(ws, "python3", "-c", script, limits=Limits(output_bytes=10_000))
    assert res.output.startswith("FIRST") and "LAST" in res.output
    assert res.truncated and "bytes of output cut" in res.output and len(res.output) < 12_000


def test_capture_keeps_head_and_tail() -> None:
    cap = Capture(10)
    for ch in (b"abc", b"defgh", b"ijklmnop", b"qrst"):
        cap.add(ch)
    text, cut = cap.text()
    assert cut and text.startswith("abcde") and text.endswith("pqrst") and cap.total == 20


async def test_workspace_cap_refuses(ws: Workspace) -> None:
    (ws.root / "blob").write_bytes(b"x" * 300_000)
    with pytest.raises(WorkspaceTooBig):
        await run(ws, "true", limits=Limits(workspace_bytes=100_000))


async def test_bad_cwd_refused(ws: Workspace) -> None:
    with pytest.raises(PathRefused):
        await run(ws, "true", cwd="../..")


def test_bwrap_required_but_missing_refuses_and_auto_without_bwrap_is_none() -> None:
    probe.reset()
    try:
        with pytest.raises(SandboxUnavailable, match="bubblewrap"):
            sandbox_mode(Settings(sandbox="bwrap", bwrap_path="/nonexistent/bwrap"))
        assert sandbox_mode(Settings(sandbox="", bwrap_path="/nonexistent/bwrap")) == "none"
    finally:
        probe.reset()


def test_selftest_proves_the_jail() -> None:
    status = run_selftest(Settings())
    assert status["mode"] == "bwrap" and status["ok"], status
    assert all(status["checks"].values()) and len(status["checks"]) >= 6


@ROOT_ONLY
async def test_fallback_is_restricted_subprocess() -> None:
    # given a workspace the sandbox uid can reach (the fallback has no mount staging)
    base = Path(tempfile.mkdtemp(prefix="tb-fallback-"))
    os.chmod(base, 0o755)
    try:
        w = Workspace(base / "ws")
        w.create(title="t", description="d")
        s = Settings(sandbox="none")
        # when / then
        res = await run(w, "id", "-u", settings=s)
        assert res.sandbox == "none"
        assert int(res.output.strip()) >= s.sandbox_uid_base
        with pytest.raises(PathRefused):
            await run(w, "cat", "/etc/passwd", settings=s)
        with pytest.raises(PathRefused):
            await run(w, "cat", "../../x", settings=s)
        res = await run(w, "cat", "/workspace/README.md", settings=s)
        assert res.exit_code == 0 and "# t" in res.output
    finally:
        shutil.rmtree(base)



"""Per-task uids: one task cannot signal, trace, read or own another task's things (issue 11)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from app.core.config import Settings
from app.sandbox.ownership import hand_over
from app.sandbox.probe import SandboxUnavailable
from app.sandbox.uids import release, uid_for
from tests.security.sandbox_support import NEEDS_BWRAP, ROOT_ONLY, jailed, workspace

pytestmark = [NEEDS_BWRAP, ROOT_ONLY]
FALLBACK = Settings(sandbox="none")


async def test_each_task_runs_as_its_own_uid_and_owns_its_workspace() -> None:
    with workspace("a") as a, workspace("b") as b:
        ua = int((await jailed(a, "id", "-u")).output.strip())
        ub = int((await jailed(b, "id", "-u")).output.strip())
        assert ua != ub and min(ua, ub) >= Settings().sandbox_uid_base
        assert (a.root.stat().st_uid, b.root.stat().st_uid) == (ua, ub)
        assert a.root.stat().st_mode & 0o777 == 0o700


async def test_killing_another_tasks_process_fails() -> None:
    # given task A running a long command outside a pid namespace (the weakest mode)
    with workspace("a") as a, workspace("b") as b:
        victim = asyncio.ensure_future(jailed(a, "sleep", "6", settings=FALLBACK, timeout=10))
        pid = await _pid_of_uid(uid_for(a.root, FALLBACK))
        # when task B signals it, by its host pid
        res = await jailed(b, "python3", "-c",
                           f"import os,signal\ntry:\n os.kill({pid}, signal.SIGKILL)\n"
                           "except PermissionError: print('EPERM')", settings=FALLBACK)
        # then the kernel refuses: another uid
        assert "EPERM" in res.output, res.output
        assert not victim.done()
        assert (await victim).exit_code == 0


async def test_ptracing_another_tasks_process_fails() -> None:
    with workspace("a") as a, workspace("b") as b:
        victim = asyncio.ensure_future(jailed(a, "sleep", "6", settings=FALLBACK, timeout=10))
        pid = await _pid_of_uid(uid_for(a.root, FALLBACK))
        res = await jailed(b, "python3", "-c",
                           "import ctypes,os\nlibc=ctypes.CDLL(None,use_errno=True)\n"
                           f"r=libc.ptrace(16,{pid},0,0)\nprint('ptrace',r,ctypes.get_errno())",
                           settings=FALLBACK)
        assert "ptrace -1 1" in res.output, res.output  # EPERM
        assert (await victim).exit_code == 0


async def test_reading_another_tasks_workspace_fails_even_without_namespaces() -> None:
    with workspace("a") as a, workspace("b") as b:
        await jailed(a, "sh", "-c", "echo a-secret > secret.txt", settings=FALLBACK)
        # inline code is not path-checked in the fallback: only the uid protects A's files
        res = await jailed(b, "python3", "-c",
                           f"print(open({str(a.root / 'secret.txt')!r}).read())",
                           settings=FALLBACK)
        assert "a-secret" not in res.output and "PermissionError" in res.output


async def test_the_jail_shows_no_other_tasks_processes() -> None:
    with workspace("a") as a, workspace("b") as b:
        victim = asyncio.ensure_future(jailed(a, "sleep", "3", timeout=10))
        await asyncio.sleep(0.5)
        res = await jailed(b, "python3", "-c",
                           "import os;print(sorted(int(p) for p in os.listdir('/proc') "
                           "if p.isdigit()))")
        assert (await victim).exit_code == 0
        assert len(eval(res.output.strip())) <= 3  # noqa: S307 - a list of ints we printed


async def test_no_process_of_a_task_outlives_its_command() -> None:
    with workspace() as ws:
        res = await jailed(ws, "sh", "-c", "setsid sleep 30 & nohup sleep 30 & echo started",
                           settings=FALLBACK)
        assert "started" in res.output
        uid = uid_for(ws.root, FALLBACK)
        assert uid is not None
        assert _procs_of_uid(uid[0]) == []


def test_hand_over_never_chowns_a_hard_linked_or_symlinked_host_file(tmp_path: Path) -> None:
    # given host files linked into a workspace (a planted hard link and a symlink)
    host = Path(tempfile.mkdtemp(prefix="tb-host-"))
    target, linked = host / "host-owned.py", host / "other.py"
    target.write_text("HOST = 1\n")
    linked.write_text("OTHER = 1\n")
    ws = tmp_path / "ws"
    ws.mkdir()
    os.link(target, ws / "hard.py")
    (ws / "soft.py").symlink_to(linked)
    # when the workspace is handed to a task uid
    hand_over(ws, 200999, 200999)
    # then neither host file changed hands
    assert target.stat().st_uid == 0 and linked.stat().st_uid == 0
    assert (ws / "soft.py").lstat().st_uid == 200999


def test_same_workspace_shares_a_uid_across_processes_others_get_their_own(
        tmp_path: Path) -> None:
    settings = Settings(sandbox_uid_lock_dir=tmp_path / "locks")
    shared, other = tmp_path / "shared", tmp_path / "other"
    shared.mkdir()
    other.mkdir()
    holder = _hold_in_child(shared, settings)
    try:
        mine = uid_for(shared, settings)
        theirs = int(holder.stdout.readline())  # type: ignore[union-attr]
        assert mine is not None and mine[0] == theirs
        assert uid_for(other, settings) != mine
    finally:
        holder.kill()
        holder.wait()
        release(shared)
        release(other)


def test_a_dead_workers_uid_is_free_again(tmp_path: Path) -> None:
    # given a single uid, held by another process for its own workspace
    settings = Settings(sandbox_uid_lock_dir=tmp_path / "locks", sandbox_uid_count=1)
    theirs, mine = tmp_path / "theirs", tmp_path / "mine"
    theirs.mkdir()
    mine.mkdir()
    holder = _hold_in_child(theirs, settings)
    holder.stdout.readline()  # type: ignore[union-attr]
    try:
        with pytest.raises(SandboxUnavailable, match="in use"):
            uid_for(mine, settings)
    finally:
        holder.kill()
        holder.wait()
    # when that process died, its uid can be given out again
    assert uid_for(mine, settings) == (settings.sandbox_uid_base,) * 2
    release(mine)


def _hold_in_child(root: Path, settings: Settings) -> subprocess.Popen[str]:
    code = ("import sys,time\nfrom pathlib import Path\nfrom app.core.config import Settings\n"
            "from app.sandbox.uids import uid_for\n"
            f"s=Settings(sandbox_uid_lock_dir={str(settings.sandbox_uid_lock_dir)!r},"
            f"sandbox_uid_count={settings.sandbox_uid_count})\n"
            f"print(uid_for(Path({str(root)!r}), s)[0], flush=True)\ntime.sleep(60)\n")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})


async def _pid_of_uid(ids: tuple[int, int] | None) -> int:
    assert ids is not None
    for _ in range(100):
        pids = _procs_of_uid(ids[0])
        if pids:
            return pids[0]
        await asyncio.sleep(0.05)
    raise AssertionError("the victim never started")


def _procs_of_uid(uid: int) -> list[int]:
    found = []
    for p in os.listdir("/proc"):
        try:
            if p.isdigit() and os.stat(f"/proc/{p}").st_uid == uid:
                with open(f"/proc/{p}/stat", "rb") as fh:
                    if fh.read().rsplit(b")", 1)[1].split()[0] != b"Z":
                        found.append(int(p))
        except OSError:
            continue
    return found


async def test_a_reused_uid_cannot_enter_the_workspace_it_had_before(tmp_path: Path) -> None:
    # given a single uid: task A used it and ended, then task B gets the same uid
    settings = Settings(sandbox="none", sandbox_uid_count=1,
                        sandbox_uid_lock_dir=tmp_path / "locks")
    with workspace("a") as a, workspace("b") as b:
        await jailed(a, "sh", "-c", "echo a-secret > secret.txt", settings=settings)
        release(a.root)
        # when B reads A's files by their host path
        res = await jailed(b, "python3", "-c",
                           f"print(open({str(a.root / 'secret.txt')!r}).read())",
                           settings=settings)
        # then A's workspace went back to root when A let go: B cannot enter it
        assert "a-secret" not in res.output and "PermissionError" in res.output
        assert a.root.stat().st_uid == 0

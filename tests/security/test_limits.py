"""Attacks on the shared resources: processes, memory, disk, zombies (issue 11 #6, 17 #2).

Each runs a real attack in the jail and asserts the safe outcome within a bounded time."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from app.core.config import Settings
from app.sandbox import diskcap, reaper
from app.sandbox.limits import Limits, MiB
from tests.security.sandbox_support import (
    NEEDS_BWRAP,
    ROOT_ONLY,
    jailed,
    needs_cgroup,
    workspace,
)

pytestmark = [NEEDS_BWRAP, ROOT_ONLY]
FORK_BOMB = "f(){ f | f & }; f; sleep 4"
NPROC = 20  # the process limit the zombie test runs its commands under


async def test_fork_bomb_in_one_task_leaves_other_tasks_commands_working() -> None:
    # given two tasks, one of them fork-bombing to its process limit for 4 s
    with workspace("bomber") as bomber, workspace("victim") as victim:
        bomb = asyncio.ensure_future(jailed(bomber, "sh", "-c", FORK_BOMB, timeout=8,
                                            limits=Limits(nproc=64, pids=128)))
        await asyncio.sleep(1.0)
        # when the other task runs commands meanwhile
        results = [await jailed(victim, "sh", "-c", "echo ok; true") for _ in range(5)]
        bombed = await bomb
        # then every one of them ran, and the worker (this process) is fine afterwards
        assert [r.exit_code for r in results] == [0] * 5, [r.output for r in results]
        assert all("ok" in r.output for r in results)
        assert bombed.duration_ms < 15_000
        after = await jailed(bomber, "echo", "still-usable")
        assert after.exit_code == 0 and "still-usable" in after.output


async def test_fork_bomb_is_stopped_at_the_command_pids_cap() -> None:
    with workspace() as ws:
        res = await jailed(ws, "python3", "-c",
                           "import os,time\nn=0\n"
                           "while True:\n"
                           "    try:\n        pid=os.fork()\n"
                           "    except OSError:\n        print('capped at', n, flush=True); break\n"
                           "    if pid == 0:\n        time.sleep(30); os._exit(0)\n"
                           "    n+=1\n",
                           timeout=20, limits=Limits(nproc=1000, pids=40))
        assert "capped at" in res.output, res.output
        assert int(res.output.split("capped at")[1].split()[0]) < 40


@needs_cgroup()
async def test_memory_cap_holds_across_a_commands_children() -> None:
    # given four children each touching 64 MiB under a 128 MiB cap for the whole command
    script = ("import os,time\n"
              "for _ in range(4):\n"
              "    if os.fork() == 0:\n"
              "        b = bytearray(64*1024*1024)\n"
              "        for i in range(0, len(b), 4096): b[i] = 1\n"
              "        time.sleep(3); os._exit(0)\n"
              "codes = [os.wait()[1] for _ in range(4)]\n"
              "print('killed', sum(1 for c in codes if c != 0))\n")
    with workspace() as ws:
        res = await jailed(ws, "python3", "-c", script, timeout=30,
                           limits=Limits(memory_bytes=128 * MiB))
    # then the tree never held more than the cap, and the kernel killed children to keep it
    assert 0 < res.cgroup_peak_bytes <= 128 * MiB + 4 * MiB
    assert "killed 0" not in res.output, res.output


@needs_cgroup()
async def test_memory_of_one_task_does_not_count_against_another() -> None:
    with workspace("a") as a, workspace("b") as b:
        hog = asyncio.ensure_future(jailed(
            a, "python3", "-c", "b=bytearray(100*1024*1024)\nimport time;time.sleep(2)",
            limits=Limits(memory_bytes=160 * MiB)))
        await asyncio.sleep(0.5)
        res = await jailed(b, "python3", "-c", "b=bytearray(100*1024*1024);print('fine')",
                           limits=Limits(memory_bytes=160 * MiB))
        assert (await hog).exit_code == 0
    assert res.exit_code == 0 and "fine" in res.output


async def test_disk_fill_is_stopped_while_the_command_runs() -> None:
    # given a 40 MiB cap; the command tries to write 400 MiB in 8 MiB files (each under FSIZE)
    script = ("import time\n"
              "for i in range(50):\n"
              "    open(f'fill{i}', 'wb').write(b'x' * (8*1024*1024))\n"
              "    time.sleep(0.05)\n"
              "print('wrote everything')\n")
    with workspace() as ws:
        start = time.monotonic()
        res = await jailed(ws, "python3", "-c", script, timeout=60,
                           limits=Limits(workspace_bytes=40 * MiB, file_size_bytes=16 * MiB))
        used = diskcap.measure(str(ws.root))
    # then it was killed long before the end, and the workspace stopped near the cap
    assert res.disk_cap_hit and "grew past its cap" in res.output
    assert "wrote everything" not in res.output
    assert used <= 40 * MiB + 48 * MiB, used // MiB
    assert time.monotonic() - start < 30


async def test_disk_cap_refuses_the_next_command_after_host_side_growth() -> None:
    with workspace() as ws:
        await jailed(ws, "true", limits=Limits(workspace_bytes=10 * MiB))
        (ws.root / "big").write_bytes(b"x" * (12 * MiB))
        from app.sandbox.limits import WorkspaceTooBig

        with pytest.raises(WorkspaceTooBig):
            await jailed(ws, "true", limits=Limits(workspace_bytes=10 * MiB))


async def test_a_5k_file_venv_is_not_walked_for_every_command(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # given a workspace with 5000 files in its venv, owned by the task already
    with workspace() as ws:
        sp = ws.venv / "lib" / "site-packages"
        for i in range(50):
            (sp / f"p{i}").mkdir(parents=True)
            for j in range(100):
                (sp / f"p{i}" / f"m{j}.py").write_text("x = 1\n")
        await jailed(ws, "true")
        walked: list[int] = []
        real = diskcap.walk

        def counting(top: str, *a: object, **kw: object) -> int:
            size = real(top, *a, **kw)  # type: ignore[arg-type]
            walked.append(size)
            return size

        monkeypatch.setattr(diskcap, "walk", counting)
        # when 15 commands run
        for _ in range(15):
            assert (await jailed(ws, "true")).exit_code == 0
        # then the disk cap never walked the whole workspace
        assert walked == []


async def test_commands_past_the_process_limit_leave_no_zombies_against_it() -> None:
    # given a worker that adopts orphans, and commands that leave orphans behind: three times
    # as many as the task uid may have processes (each command's orphan, left a zombie,
    # would count against the limit: the limit's worth of commands later, none could fork).
    # 220 commands took ~50 s of the suite; three times the limit proves the same.
    assert reaper.become_subreaper()
    settings = Settings(sandbox="none")
    with workspace() as ws:
        for i in range(3 * NPROC):
            res = await jailed(ws, "sh", "-c", "sleep 5 & echo $$", settings=settings,
                               limits=Limits(nproc=NPROC), timeout=10)
            assert res.exit_code == 0, (i, res.output)
    # then no command failed on nproc=20 above (their zombies were reaped as they came), and
    # what the last orphans leave (and orphans other tests left to this subreaper) is reaped
    reaper.reap(lambda _uid: True)
    zombies = [p for p in os.listdir("/proc") if p.isdigit() and _zombie_child_of_me(p)]
    assert zombies == []


def _zombie_child_of_me(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except OSError:
        return False
    return fields[0] == b"Z" and int(fields[1]) == os.getpid()


def test_health_says_loudly_when_limits_fall_back_to_rlimits() -> None:
    from app.sandbox import cgroups
    from app.sandbox.selftest import run_selftest

    cgroups.reset()
    try:
        off = run_selftest(Settings(sandbox_cgroup="off"))["limits"]
        assert off["cgroup"] == "none" and "per process only" in off["memory_cap"]
        assert off["per_task_uid"] is True and off["subreaper"] is True
        on = run_selftest(Settings())["limits"]
        assert on["cgroup"] in ("v1", "v2", "none")
        if on["cgroup"] != "none":
            assert on["memory_cap"] == "per command tree"
    finally:
        cgroups.reset()


def test_groups_left_by_a_dead_worker_are_swept() -> None:
    from app.sandbox import cgroups

    backend = cgroups.detect(Settings())
    if not backend.version:
        pytest.skip(f"no cgroup here: {backend.reason}")
    # given a command group of a worker that died (no such pid)
    stale = backend.create("cmd-999999999-0", Limits())
    assert stale is not None
    # when a worker process detects the hierarchy
    cgroups.reset()
    cgroups.detect(Settings())
    # then the stale group is gone
    assert not any(os.path.exists(d) for d in stale.dirs)

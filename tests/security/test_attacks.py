"""The attack suite: what a hostile command or web page would try, through the tools, as an
agent would call them. Every test also checks a sentinel in a sibling "other task" folder."""

from __future__ import annotations

import os
import resource
import secrets
import shutil
import time
from pathlib import Path

import pytest

import app.tools  # noqa: F401  (registers the tools)
from app.tools.registry import dispatch
from tests.fakes.tool_context import make_context

pytestmark = pytest.mark.skipif(not shutil.which("bwrap"), reason="bubblewrap not installed")


@pytest.fixture
def agent(tmp_path: Path):
    other = tmp_path / "other-task"
    other.mkdir()
    sentinel = other / "secret.txt"
    sentinel.write_text("other task's data")
    before = (sentinel.read_text(), sentinel.stat().st_mtime_ns, sorted(os.listdir(other)))
    ctx, events = make_context(tmp_path / "ws")
    yield ctx, events, sentinel
    assert (sentinel.read_text(), sentinel.stat().st_mtime_ns, sorted(os.listdir(other))) \
        == before, "something outside the workspace changed"


async def cmd(ctx, command: str, **kw):
    return await dispatch(ctx, "run_command", {"command": command, **kw}, None)


async def test_read_host_secrets_fails(agent) -> None:
    ctx, _, sentinel = agent
    for path in ("/etc/shadow", "/root/.ssh/id_rsa", str(sentinel), "../other-task/secret.txt"):
        out = await cmd(ctx, f"cat {path}")
        assert "other task's data" not in out.output and "root:" not in out.output
        assert out.data.get("exit_code", 1) != 0 or out.refused


async def test_writes_outside_workspace_fail(agent) -> None:
    ctx, _, sentinel = agent
    for command in (f"touch {sentinel.parent}/planted", "touch ../other-task/planted",
                    f"cp README.md {sentinel}", "mkdir /usr/evil"):
        out = await cmd(ctx, command)
        assert out.data.get("exit_code", 1) != 0
    (ctx.workspace.root / "link").symlink_to(sentinel.parent)
    out = await cmd(ctx, "touch link/planted")
    assert out.data["exit_code"] != 0
    for path in ("../x", "/tmp/x", "link/planted"):
        out = await dispatch(ctx, "write_file", {"path": path, "content": "x"}, None)
        assert out.refused


async def test_env_canary_never_visible(agent, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx, _, _ = agent
    canary = "canary" + secrets.token_hex(12)
    for name in ("TASKBENCH_LLM_API_KEY", "GITHUB_TOKEN", "TASKBENCH_GITHUB_TOKEN", "RANDOM_X"):
        monkeypatch.setenv(name, canary)
    monkeypatch.setenv("LD_PRELOAD", "/tmp/evil.so")
    for command in ("python3 -c 'import os;print(dict(os.environ))'",
                    "cat /proc/self/environ", "cat /proc/1/environ", "env"):
        out = await cmd(ctx, command)
        assert canary not in out.output and "evil.so" not in out.output


async def test_secret_in_output_is_redacted(agent) -> None:
    ctx, _, _ = agent
    ctx.settings = ctx.settings.model_copy(update={"github_token": "ghp_supersecret123"})
    (ctx.workspace.root / "leak.txt").write_text("token=ghp_supersecret123")
    out = await cmd(ctx, "cat leak.txt")
    assert "ghp_supersecret123" not in out.output and "[REDACTED]" in out.output


async def test_no_network_from_inside(agent) -> None:
    ctx, _, _ = agent
    out = await cmd(ctx, "python3 -c \"import socket;s=socket.socket();s.settimeout(3);"
                         "s.connect(('127.0.0.1',6379));print('CONNECTED')\"")
    assert "CONNECTED" not in out.output and out.data["exit_code"] != 0


async def test_fork_bomb_is_stopped(agent) -> None:
    ctx, _, _ = agent
    ctx.agent_config["limits"] = {"nproc": 64}
    bomb = ("import os\nn=0\nwhile True:\n try:\n  os.fork(); n+=1\n except OSError:\n"
            "  print('LIMIT', flush=True); os._exit(3)")
    (ctx.workspace.root / "bomb.py").write_text(bomb)
    start = time.monotonic()
    out = await cmd(ctx, "python3 bomb.py", timeout=20)
    assert time.monotonic() - start < 25
    assert "LIMIT" in out.output or out.data["timed_out"]


async def test_memory_bomb_is_stopped(agent) -> None:
    ctx, _, _ = agent
    ctx.agent_config["limits"] = {"address_space_bytes": 512 * 1024 * 1024}
    out = await cmd(ctx, "python3 -c \"x = bytearray(4 * 1024**3)\"")
    assert out.data["exit_code"] != 0 and "MemoryError" in out.output
    # Linux carries the forking process's RSS high-water mark into the child's ru_maxrss (the
    # jail is started with a preexec hook, so it is a fork of this test process): the bomb's own
    # growth is bounded by the 512 MiB cap on top of that, far below its 4 GiB
    inherited = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert out.data["peak_rss_kb"] < 600 * 1024 + inherited


async def test_sigterm_ignoring_process_tree_is_killed(agent) -> None:
    ctx, _, _ = agent
    token = "survivor" + secrets.token_hex(6)
    script = ("import os,signal,time,sys\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              "if os.fork() == 0: os.setsid()\ntime.sleep(120)\n")
    (ctx.workspace.root / f"{token}.py").write_text(script)
    out = await cmd(ctx, f"python3 {token}.py", timeout=1)
    assert out.data["timed_out"]
    time.sleep(0.3)
    survivors = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if token.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                survivors.append(pid)
        except OSError:
            pass
    assert survivors == []


async def test_gigabytes_of_output_bounded(agent) -> None:
    ctx, _, _ = agent
    start = time.monotonic()
    out = await cmd(ctx, "cat /dev/zero", timeout=60)
    assert time.monotonic() - start < 20
    assert out.data["truncated"] and len(out.output) <= 25_000


@pytest.mark.parametrize("command, why", [
    ("find . -exec sh -c id ;", "-exec"),
    ("find . -delete", "-delete"),
    ("git -c core.pager=sh log", "git -c"),
    ("git --upload-pack=touch clone x y", "--upload-pack"),
    ("git config core.fsmonitor 'touch x'", "core.fsmonitor"),
    ("make SHELL=/bin/sh", "SHELL"),
    ("sh -c id", "allow-list"),
    ("/bin/sh -c id", "by name"),
    ("ls | sh", "without a shell"),
])
async def test_argument_injection_refused(agent, command: str, why: str) -> None:
    ctx, events, _ = agent
    out = await cmd(ctx, command)
    assert out.refused and why in out.output
    assert events.of("tool_refused")[-1]["tool"] == "run_command"


async def test_allowed_program_running_others_stays_jailed(agent) -> None:
    # given a Makefile that shells out to the network and to host files
    ctx, _, sentinel = agent
    (ctx.workspace.root / "Makefile").write_text(
        f"all:\n\tcat {sentinel} || echo NO-HOST-FILE\n"
        "\tpython3 -c \"import socket;socket.create_connection(('127.0.0.1',6379),2)\" "
        "|| echo NO-NETWORK\n\ttouch made-by-make\n"
    )
    # when make runs (it is allowed, and it runs sh)
    out = await cmd(ctx, "make")
    # then it ran, but could not reach the network or the host's files
    assert "NO-HOST-FILE" in out.output and "NO-NETWORK" in out.output
    assert "other task's data" not in out.output
    assert (ctx.workspace.root / "made-by-make").exists()

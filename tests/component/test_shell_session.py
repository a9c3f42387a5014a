"""The persistent shell: one jail per task, commands fed through it, state that carries over.

Every command goes through the run_command tool, as an agent calls it, in the real jail."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import app.tools  # noqa: F401  (registers the tools)
from app.core.config import Settings
from app.run.context import RunContext
from app.sandbox.shell import Shell, ShellState
from app.tools.registry import dispatch
from tests.fakes.tool_context import make_context

needs_bwrap = pytest.mark.skipif(not shutil.which("bwrap"), reason="bubblewrap not installed")


@pytest.fixture
def shell_ctx(tmp_path: Path):
    ctx, events = make_context(tmp_path / "ws")
    (ctx.workspace.root / "src" / "pkg").mkdir(parents=True)
    yield ctx, events
    ctx.services.shell.close()


async def cmd(ctx, command: str, **kw):
    return await dispatch(ctx, "run_command", {"command": command, **kw}, None)


@needs_bwrap
async def test_cd_and_export_carry_over_in_one_session(shell_ctx) -> None:
    ctx, _ = shell_ctx
    assert (await cmd(ctx, "cd src/pkg")).output.endswith("/workspace/src/pkg")
    out = await cmd(ctx, "python3 -c 'import os; print(os.getcwd())'")
    assert out.output.splitlines()[1] == "/workspace/src/pkg"
    assert (await cmd(ctx, "export GREETING=hello TARGET=world")).ok
    out = await cmd(ctx, "python3 -c 'import os; print(os.environ[\"GREETING\"], "
                         "os.environ[\"TARGET\"])'")
    assert "hello world" in out.output
    assert (await cmd(ctx, "cd ..")).ok
    assert (await cmd(ctx, "pwd")).output.splitlines()[1] == "/workspace/src"
    assert (await cmd(ctx, "unset TARGET")).ok
    out = await cmd(ctx, "python3 -c 'import os; print(os.environ.get(\"TARGET\", \"gone\"))'")
    assert "gone" in out.output
    assert (await cmd(ctx, "cd")).ok
    assert (await cmd(ctx, "ls")).output.splitlines()[1:] == sorted(
        p.name for p in ctx.workspace.root.iterdir() if not p.name.startswith("."))
    assert ctx.services.shell.sessions_started == 1  # seven commands, one jail


@needs_bwrap
async def test_commands_are_fed_to_one_long_lived_server(shell_ctx) -> None:
    ctx, _ = shell_ctx
    seen = set()
    for _ in range(5):
        out = await cmd(ctx, "python3 -c 'import os; print(os.getppid())'")
        seen.add(out.output.splitlines()[1])
    assert seen == {"2"}  # the server is pid 2 under bubblewrap's init, every time
    session = ctx.services.shell.session
    assert session is not None and session.alive()
    first = session.proc.pid
    await cmd(ctx, "true")
    assert ctx.services.shell.session.proc.pid == first


@needs_bwrap
async def test_activated_venv_carries_over_and_deactivate_drops_it(shell_ctx) -> None:
    ctx, _ = shell_ctx
    subprocess.run([sys.executable, "-m", "venv", "--without-pip",
                    str(ctx.workspace.root / "tools-env")], check=True)
    out = await cmd(ctx, "source tools-env/bin/activate")
    assert out.ok, out.output
    out = await cmd(ctx, "python -c 'import os, sys; "
                         "print(sys.prefix, os.environ[\"VIRTUAL_ENV\"])'")
    assert out.output.splitlines()[1] == "/workspace/tools-env /workspace/tools-env"
    assert (await cmd(ctx, "deactivate")).ok
    out = await cmd(ctx, "python3 -c 'import os; print(os.environ.get(\"VIRTUAL_ENV\", \"none\"))'")
    assert out.output.splitlines()[1] == "none"
    assert (await cmd(ctx, ". tools-env/bin/activate")).ok
    assert ctx.services.shell.state.venv == "tools-env"


@pytest.mark.parametrize("command, says", [
    ("export PATH=/tmp", "PATH"),
    ("export LD_PRELOAD=/workspace/x.so", "LD_PRELOAD"),
    ("export PYTHONPATH=/workspace", "PYTHONPATH"),
    ("export GIT_DIR=/workspace/other", "GIT_DIR"),
    ("export NOVALUE", "give a value"),
    ("source setup.sh", "only a venv's activation"),
    ("source src/bin/activate", "not the activate script of a venv"),
])
async def test_builtins_refuse_what_would_change_the_sandbox(shell_ctx, command, says) -> None:
    ctx, _ = shell_ctx
    (ctx.workspace.root / "src" / "bin").mkdir()
    (ctx.workspace.root / "src" / "bin" / "activate").write_text("export PATH=/evil\n")
    before = ctx.services.shell.state.to_dict()
    out = await cmd(ctx, command)
    assert not out.ok and says in out.output
    assert ctx.services.shell.state.to_dict() == before


@pytest.mark.parametrize("target", ["/etc", "..", "../..", "/workspace/../etc", "nowhere"])
async def test_cd_never_leaves_the_workspace(shell_ctx, target) -> None:
    ctx, events = shell_ctx
    out = await cmd(ctx, f"cd {target}")
    assert not out.ok
    assert ctx.services.shell.state.cwd == "."


async def test_cd_through_a_planted_link_out_is_refused(shell_ctx, tmp_path: Path) -> None:
    ctx, _ = shell_ctx
    (ctx.workspace.root / "out").symlink_to(tmp_path)
    out = await cmd(ctx, "cd out")
    assert out.refused and "leaves the workspace" in out.output
    assert ctx.services.shell.state.cwd == "."


@needs_bwrap
async def test_a_timeout_kills_the_command_not_the_session(shell_ctx) -> None:
    ctx, _ = shell_ctx
    await cmd(ctx, "cd src")
    await cmd(ctx, "export KEEP=1")
    out = await cmd(ctx, "python3 -c 'import time; time.sleep(30)'", timeout=1)
    assert out.data["timed_out"] and "timed out after 1s" in out.output
    out = await cmd(ctx, "python3 -c 'import os; print(os.getcwd(), os.environ[\"KEEP\"])'")
    assert out.output.splitlines()[1] == "/workspace/src 1"
    assert ctx.services.shell.sessions_started == 1


@needs_bwrap
async def test_nothing_a_command_started_outlives_it(shell_ctx) -> None:
    ctx, _ = shell_ctx
    daemon = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    while True:\n"
              "        open('beat', 'a').write('x'); time.sleep(0.02)\nprint('forked')\n")
    (ctx.workspace.root / "daemon.py").write_text(daemon)
    out = await cmd(ctx, "python3 daemon.py")
    assert "forked" in out.output
    await asyncio.sleep(0.3)
    size = (ctx.workspace.root / "beat").stat().st_size
    await asyncio.sleep(0.3)
    assert (ctx.workspace.root / "beat").stat().st_size == size  # the daemon is gone
    out = await cmd(ctx, "ls /proc")
    pids = [p for p in out.output.splitlines()[1:] if p.isdigit()]
    assert len(pids) == 3  # bubblewrap's init, the server and this ls


@needs_bwrap
async def test_a_command_that_kills_the_server_gets_a_new_session_with_the_state(
        shell_ctx) -> None:
    ctx, _ = shell_ctx
    await cmd(ctx, "cd src")
    await cmd(ctx, "export KEEP=yes")
    out = await cmd(ctx, "python3 -c 'import os, signal; os.kill(os.getppid(), signal.SIGKILL)'")
    assert "shell session ended" in out.output
    out = await cmd(ctx, "python3 -c 'import os; print(os.getcwd(), os.environ[\"KEEP\"])'")
    assert out.output.splitlines()[1] == "/workspace/src yes"
    assert ctx.services.shell.sessions_started == 2


@needs_bwrap
async def test_new_limits_start_a_new_session(shell_ctx) -> None:
    ctx, _ = shell_ctx
    await cmd(ctx, "true")
    ctx.agent_config["limits"] = {"nproc": 64}
    await cmd(ctx, "true")
    assert ctx.services.shell.sessions_started == 2
    assert ctx.services.shell.session.limits.nproc == 64


@needs_bwrap
async def test_the_disk_cap_stops_a_command_and_the_session_lives_on(shell_ctx) -> None:
    ctx, _ = shell_ctx
    ctx.agent_config["limits"] = {"workspace_bytes": 8 * 1024 * 1024}
    grow = ("import time\nf = open('big', 'wb')\nfor _ in range(400):\n"
            "    f.write(b'x' * 65536); f.flush(); time.sleep(0.01)\n")
    (ctx.workspace.root / "grow.py").write_text(grow)
    out = await cmd(ctx, "python3 grow.py", timeout=60)
    assert out.data["disk_cap_hit"] and "grew past its cap" in out.output
    (ctx.workspace.root / "big").unlink()
    assert (await cmd(ctx, "python3 -c 'print(7)'")).output.splitlines()[1] == "7"
    assert ctx.services.shell.sessions_started == 1


@needs_bwrap
async def test_a_missing_program_and_a_removed_folder_are_clear(shell_ctx) -> None:
    ctx, _ = shell_ctx
    ctx.allowed_commands = ["python3", "nosuchtool", "mkdir", "true"]
    out = await cmd(ctx, "nosuchtool --help")
    assert out.data["exit_code"] == 127 and "command not found" in out.output
    await cmd(ctx, "mkdir gone")
    await cmd(ctx, "cd gone")
    (ctx.workspace.root / "gone").rmdir()
    out = await cmd(ctx, "true")
    assert not out.ok and "no longer exists" in out.output
    assert ctx.services.shell.state.cwd == "."
    assert (await cmd(ctx, "true")).ok


@needs_bwrap
async def test_run_python_uses_the_shell_state(shell_ctx) -> None:
    ctx, _ = shell_ctx
    await cmd(ctx, "cd src")
    await cmd(ctx, "export MODE=fast")
    out = await dispatch(ctx, "run_python",
                         {"code": "import os; print(os.getcwd(), os.environ['MODE'])"}, None)
    assert out.output.splitlines()[1] == "/workspace/src fast"


async def test_the_restricted_fallback_keeps_the_state_too(tmp_path: Path) -> None:
    ctx, _ = make_context(tmp_path / "ws", settings=Settings(sandbox="none"))
    ctx.allowed_commands = ["ls", "env", "touch"]
    await cmd(ctx, "touch src/marker")
    await cmd(ctx, "cd src")
    await cmd(ctx, "export COLOR=blue")
    assert (await cmd(ctx, "ls")).output.splitlines()[1:] == ["marker"]
    assert "COLOR=blue" in (await cmd(ctx, "env")).output.splitlines()
    assert ctx.services.shell.session is None  # no process outlives a command here


def test_state_round_trips_and_survives_garbage() -> None:
    state = ShellState(cwd="src", env={"A": "1"}, venv=None)
    assert ShellState.from_dict(state.to_dict()) == state
    assert ShellState.from_dict(None) == ShellState()
    assert ShellState.from_dict({"env": "nope", "cwd": 3}).env == {}


async def test_the_state_is_checkpointed_and_restored(db) -> None:
    from tests.factories.scenario import make_run_context

    ctx = await make_run_context({})
    ctx.services.shell.state = ShellState(cwd="src", env={"STAGE": "2"}, venv=None)
    await ctx.save_checkpoint([{"role": "user", "content": "x"}], {"current": "build"})
    # a resumed run (another worker): a new context, a new shell
    again = RunContext(task=ctx.task, agent=ctx.agent, workspace=ctx.workspace,
                       settings=ctx.settings, limits=ctx.limits, worker_id="other")
    assert again.services.shell.state == ShellState()
    saved = await again.load_checkpoint()
    assert saved is not None and saved.state["current"] == "build"
    assert again.services.shell.state == ShellState(cwd="src", env={"STAGE": "2"}, venv=None)


@needs_bwrap
async def test_closing_the_shell_leaves_no_process(tmp_path: Path) -> None:
    ctx, _ = make_context(tmp_path / "ws")
    await cmd(ctx, "true")
    session = ctx.services.shell.session
    assert session is not None
    pid = session.proc.pid
    ctx.services.shell.close()
    assert session.proc.poll() is not None
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    assert isinstance(ctx.services.shell, Shell) and ctx.services.shell.session is None


@needs_bwrap
async def test_an_agent_works_in_one_shell_through_the_whole_task(app_client, enqueued,
                                                                   llm) -> None:
    # given a scripted model that moves around, sets a variable and times a command out
    from tests.factories.loop import Router, events_of
    from tests.factories.worker import submit_and_run
    from tests.fakes.llm_server import tool_call

    llm.responder = Router().script(
        "shell", tool_call("run_command", command="mkdir -p src/app"),
        tool_call("run_command", command="cd src"),
        tool_call("run_command", command="pwd"),
        tool_call("run_command", command="export STAGE=build"),
        tool_call("run_command", command="python -c 'import os; print(os.environ[\"STAGE\"])'"),
        tool_call("run_command", command="python -c 'import time; time.sleep(60)'", timeout=1),
        tool_call("run_command", command="ls"))
    # when it runs as a task
    before = _sessions()  # (other tests' contexts may still hold theirs)
    task = await submit_and_run(app_client, enqueued, title="shell", complexity=2)
    # then every call saw what the earlier ones did, and the timeout cost only its command
    assert task["status"] == "completed", task
    out = [e["data"] for e in await events_of(app_client, task["id"], "tool_call")
           if e["data"]["tool"] == "run_command"]
    assert out[2]["output"].splitlines()[1] == "/workspace/src"
    assert out[4]["output"].splitlines()[1] == "build"
    assert out[5]["data"]["timed_out"]
    assert out[6]["ok"] and out[6]["output"].splitlines()[1:] == ["app"]
    # and the session ended with the run: no process of it is left on the host
    assert _sessions() - before == set()


def _sessions() -> set[str]:
    """Host pids of persistent-shell servers (their command line holds the server's source)."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"Started once per task" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.add(pid)
        except OSError:
            pass
    return found

"""Attacks on the persistent shell: a command that goes after the server feeding it, forges the
server's frames, or leaves something behind for the next command; and a server that lies."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import struct
from pathlib import Path

import pytest

import app.tools  # noqa: F401  (registers the tools)
from app.sandbox.capture import Capture
from app.sandbox.shell import Frames, SessionBroken, _done
from app.tools.registry import dispatch
from tests.fakes.tool_context import make_context

needs_bwrap = pytest.mark.skipif(not shutil.which("bwrap"), reason="bubblewrap not installed")


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    canary = "canary" + secrets.token_hex(8)
    monkeypatch.setenv("TASKBENCH_LLM_API_KEY", canary)
    context, _ = make_context(tmp_path / "ws")
    context.canary = canary  # type: ignore[attr-defined]
    yield context
    context.services.shell.close()


async def cmd(ctx, command: str, **kw):
    return await dispatch(ctx, "run_command", {"command": command, **kw}, None)


def frame(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack(">I", len(payload)) + payload


@needs_bwrap
async def test_the_servers_pipes_and_environment_are_out_of_reach(ctx) -> None:
    probe = ("import os\nfor p in ('/proc/2/fd/0', '/proc/2/fd/1', '/proc/2/environ', "
             "'/proc/2/mem'):\n    try:\n        open(p, 'wb' if 'fd' in p else 'rb')\n"
             "        print('OPENED', p)\n    except OSError as e:\n        print('no', p, "
             "e.errno)\n")
    (ctx.workspace.root / "probe.py").write_text(probe)
    out = await cmd(ctx, "python3 probe.py")
    assert "OPENED" not in out.output and out.output.count("no /proc/2") == 4
    assert ctx.canary not in out.output


@needs_bwrap
async def test_forged_frames_in_the_output_stay_output(ctx) -> None:
    forged = frame(b"d", b'{"exit_code": 0}') + frame(b"o", b"FORGED")
    (ctx.workspace.root / "forge.py").write_bytes(
        b"import sys\nsys.stdout.buffer.write(" + repr(forged).encode() + b")\nsys.exit(5)\n")
    out = await cmd(ctx, "python3 forge.py")
    assert out.data["exit_code"] == 5  # the real one, not the forged frame's
    assert "FORGED" in out.output
    assert (await cmd(ctx, "true")).data["exit_code"] == 0
    assert ctx.services.shell.sessions_started == 1


@needs_bwrap
async def test_a_fork_bomb_leaves_a_working_shell(ctx) -> None:
    ctx.agent_config["limits"] = {"nproc": 64}
    bomb = ("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n"
            "        pass\n")
    (ctx.workspace.root / "bomb.py").write_text(bomb)
    out = await cmd(ctx, "python3 bomb.py", timeout=3)
    assert out.data["timed_out"] or out.data["exit_code"] != 0
    out = await cmd(ctx, "python3 -c 'print(40 + 2)'")
    assert out.output.splitlines()[1] == "42"


@needs_bwrap
async def test_a_process_left_to_tamper_between_commands_is_gone(ctx) -> None:
    # a child that waits for the host to write a file, then swaps it for a link out
    lurker = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    for _ in range(500):\n"
              "        if os.path.exists('notes.txt'):\n            os.replace('notes.txt', 'x')\n"
              "            os.symlink('/etc/passwd', 'notes.txt')\n            break\n"
              "        time.sleep(0.01)\n")
    (ctx.workspace.root / "lurk.py").write_text(lurker)
    await cmd(ctx, "python3 lurk.py")
    out = await dispatch(ctx, "write_file", {"path": "notes.txt", "content": "mine"}, None)
    assert out.ok
    await asyncio.sleep(0.3)
    notes = ctx.workspace.root / "notes.txt"
    assert not notes.is_symlink() and notes.read_text() == "mine"


def test_a_lying_server_is_caught(tmp_path: Path) -> None:
    cap = Capture(1000)
    for payload in (b"not json", b"[]", b'{"exit_code": "0"}', b'{"exit_code": 0, "clean": false}'):
        with pytest.raises(SessionBroken):
            _done(payload, cap)
    fin = _done(b'{"exit_code": 3, "cpu_s": "lots", "peak_rss_kb": null, "error": "x"}', cap)
    assert (fin.exit_code, fin.cpu_s, fin.peak_rss_kb) == (3, 0.0, 0)
    read, write = os.pipe()
    try:
        frames = Frames(read)
        os.write(write, frame(b"o", b"ok") + b"z" + struct.pack(">I", 1) + b"?")
        assert frames.next(1) == (b"o", b"ok")
        with pytest.raises(SessionBroken):
            frames.next(1)  # an unknown kind
        frames = Frames(read)
        os.write(write, b"o" + struct.pack(">I", 1 << 30))
        with pytest.raises(SessionBroken):
            frames.next(1)  # a frame bigger than any the server sends
        os.close(write)
        write = -1
        with pytest.raises(EOFError):
            Frames(read).next(1)
    finally:
        os.close(read)
        if write >= 0:
            os.close(write)

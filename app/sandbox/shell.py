"""A persistent shell per task: one jail for the whole run, commands fed through it.

    Shell                  one per task run (Ports.shell): the shell state the agent changes
                           with builtins (folder, exported variables, active venv), kept on the
                           host, and the task's JailSession
    Shell.run(argv, …)     like run_jailed, in the state's folder and environment: under
                           bubblewrap through the session (started on first use, started again
                           after it ended or when the limits change), else per command through
                           run_jailed (the restricted subprocess keeps no process alive)
    Shell.close()          ends the session (the runner, before the task's uid is released)

    JailSession            bubblewrap running shell_server.py with run_jailed's isolation (no
                           network, only the workspace writable, the task's uid, rlimits and a
                           cgroup for the session's tree); one command at a time

Each command still gets what run_jailed gives it: the workspace handed to the task's uid and
checked against its disk cap before and while it runs, its own deadline (the server kills the
command and everything it started, never the session), capped output, CPU time and peak memory.
What the server says is hostile like any output: frames are size-checked, and a server that
sends garbage, floods past the cap or misses its deadline is killed and replaced. The state is
the host's, so a new session (after a crash, a resume on another worker) continues where the
last one left off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import selectors
import signal
import struct
import subprocess
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.config import Settings
from app.sandbox import reaper
from app.sandbox.capture import Capture, Finished
from app.sandbox.envpolicy import jail_env
from app.sandbox.jail import (
    JAIL_WORKSPACE,
    VENV,
    CommandResult,
    JailedProcess,
    SandboxUnavailable,
    active_venv,
    command_result,
    host_python,
    jailed_process,
    prepare,
    run_jailed,
    sandbox_mode,
)
from app.sandbox.limits import Limits
from app.sandbox.workspace import Workspace

log = logging.getLogger(__name__)
SERVER_SOURCE = (Path(__file__).parent / "shell_server.py").read_text()
START_TIMEOUT_S = 10.0
BACKSTOP_S = 5.0  # past a command's deadline, how long the server has to report it
GUARD_EVERY_S = 0.25
MAX_FRAME = 1024 * 1024
FRAME_HEAD = struct.Struct(">cI")
ENDED = ("the sandbox's shell session ended while the command ran; the next command starts a "
         "new one (folder and variables are kept)")


class SessionBroken(RuntimeError):
    """The server did something it never does: it is killed and replaced."""


class Unanswered(SessionBroken):
    """No answer by the command's deadline (plus BACKSTOP_S)."""


class Flooded(SessionBroken):
    """More output than the server should have let through."""


@dataclass
class ShellState:
    """What builtins change and every later command sees; checkpointed with the run."""

    cwd: str = "."  # relative to the workspace
    env: dict[str, str] = field(default_factory=dict)  # exported by the agent
    venv: str | None = VENV  # the active venv's folder; None once deactivated

    def to_dict(self) -> dict[str, Any]:
        return {"cwd": self.cwd, "env": dict(self.env), "venv": self.venv}

    @classmethod
    def from_dict(cls, data: Any) -> ShellState:
        if not isinstance(data, dict):
            return cls()
        env = data.get("env") if isinstance(data.get("env"), dict) else {}
        venv = data.get("venv")
        return cls(cwd=str(data.get("cwd") or "."),
                   env={str(k): str(v) for k, v in (env or {}).items()},
                   venv=str(venv) if venv else None)


class Frames:
    """Frames from the server's stdout: (kind, payload), None on a timeout, EOFError at the end."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = bytearray()
        self.sel = selectors.DefaultSelector()
        self.sel.register(fd, selectors.EVENT_READ)

    def next(self, wait_s: float) -> tuple[bytes, bytes] | None:
        while True:
            if len(self.buf) >= FRAME_HEAD.size:
                kind, size = FRAME_HEAD.unpack_from(self.buf)
                if size > MAX_FRAME or kind not in (b"r", b"o", b"d"):
                    raise SessionBroken(f"a malformed frame ({kind!r}, {size} bytes)")
                end = FRAME_HEAD.size + size
                if len(self.buf) >= end:
                    payload = bytes(self.buf[FRAME_HEAD.size:end])
                    del self.buf[:end]
                    return kind, payload
            if not self.sel.select(max(wait_s, 0)):
                return None
            chunk = os.read(self.fd, 1 << 17)
            if not chunk:
                raise EOFError
            self.buf += chunk
            wait_s = 0  # take what is there; wait again only once a frame is incomplete

    def close(self) -> None:
        self.sel.close()


def _done(payload: bytes, cap: Capture) -> Finished:
    """The server's `done` frame as a Finished (every field checked: it is hostile too)."""
    try:
        info = json.loads(payload)
    except ValueError as exc:
        raise SessionBroken("a done frame that is not JSON") from exc
    if not isinstance(info, dict) or not isinstance(info.get("exit_code"), int):
        raise SessionBroken("a done frame without an exit code")
    if info.get("error"):
        cap.add(str(info["error"])[:2000].encode())
    if info.get("clean") is False:
        raise SessionBroken("the command's processes could not all be stopped")

    def num(key: str) -> float:
        value = info.get(key)
        return float(value) if isinstance(value, int | float) else 0.0

    return Finished(exit_code=info["exit_code"], capture=cap,
                    timed_out=info.get("timed_out") is True, flooded=info.get("flooded") is True,
                    cpu_s=num("cpu_s"), peak_rss_kb=int(num("peak_rss_kb")))


def _kill(proc: subprocess.Popen[bytes], jailed: JailedProcess) -> None:
    """End a session's process tree for good (also when its Shell is garbage-collected)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired, ChildProcessError):
        proc.wait(timeout=2)
    reaper.unregister(proc.pid)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe:
            with contextlib.suppress(OSError):
                pipe.close()
    jailed.close()


class JailSession:
    """One bubblewrap with the command server in it, for one task's workspace and limits."""

    def __init__(self, workspace: Workspace, settings: Settings, limits: Limits) -> None:
        self.limits = limits
        exe, _ = host_python()
        self.jailed = jailed_process([exe, "-I", "-S", "-c", SERVER_SOURCE],
                                     workspace=workspace, settings=settings, limits=limits)
        try:
            self.proc = subprocess.Popen(
                self.jailed.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=self.jailed.env, cwd="/",
                preexec_fn=self.jailed.preexec, start_new_session=True, close_fds=True)
        except OSError as exc:
            self.jailed.close()
            raise SandboxUnavailable(f"could not start the jail's shell: {exc}") from exc
        reaper.register(self.proc.pid)
        self._finalizer = weakref.finalize(self, _kill, self.proc, self.jailed)
        assert self.proc.stdout is not None
        self.frames = Frames(self.proc.stdout.fileno())
        try:
            ready = self.frames.next(START_TIMEOUT_S)
        except (EOFError, SessionBroken):
            ready = None
        if ready is None or ready[0] != b"r":
            why = self._stderr_tail() or "no answer"
            self.close()
            raise SandboxUnavailable(f"the jail's shell did not start: {why}")

    def alive(self) -> bool:
        return self._finalizer.alive and self.proc.poll() is None

    def _stderr_tail(self) -> str:
        if self.proc.poll() is None:
            return ""
        assert self.proc.stderr is not None
        with contextlib.suppress(OSError):
            return self.proc.stderr.read(4000).decode("utf-8", "replace").strip()[-500:]
        return ""

    def _send(self, request: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        self.proc.stdin.flush()

    def run(self, argv: list[str], *, cwd: str, env: dict[str, str], timeout: float,
            guard: Any) -> Finished:
        """One command to its end; a broken or ended session is closed (the caller starts
        another for the next command) and the command reported as ended with it."""
        cap = Capture(self.limits.output_bytes)
        stopped = ""
        try:
            self._send({"op": "run", "argv": argv, "cwd": cwd, "env": env,
                        "timeout": timeout, "kill_after": self.limits.output_kill_bytes})
            backstop = time.monotonic() + timeout + BACKSTOP_S
            next_guard = time.monotonic() + GUARD_EVERY_S
            while True:
                now = time.monotonic()
                if now >= backstop:
                    raise Unanswered("the shell did not answer by the command's deadline")
                if not stopped and now >= next_guard:
                    next_guard = now + GUARD_EVERY_S
                    stopped = guard()
                    if stopped:
                        self._send({"op": "kill", "why": stopped})
                frame = self.frames.next(min(next_guard, backstop) - now)
                if frame is None:
                    continue
                kind, payload = frame
                if kind == b"o":
                    cap.add(payload)
                    if cap.total > self.limits.output_kill_bytes + MAX_FRAME:
                        raise Flooded("output past the cap")
                elif kind == b"d":
                    fin = _done(payload, cap)
                    fin.stopped = stopped
                    return fin
                else:
                    raise SessionBroken("a second ready frame")
        except (EOFError, OSError, SessionBroken) as exc:
            log.warning("the jail's shell ended: %s", exc)
            self.close()
            timed_out = isinstance(exc, Unanswered)
            return Finished(exit_code=-signal.SIGKILL, capture=cap, timed_out=timed_out,
                            flooded=isinstance(exc, Flooded), cpu_s=0.0, peak_rss_kb=0,
                            stopped=stopped, note="" if timed_out else ENDED)

    def figures(self) -> dict[str, int | bool]:
        group = self.jailed.group
        return group.figures() if group else {}

    def close(self) -> None:
        """Let the server end (its stdin closes), then kill whatever is left of the tree."""
        if not self._finalizer.alive:
            return
        with contextlib.suppress(OSError):
            if self.proc.stdin:
                self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=0.5)
        self.frames.close()
        self._finalizer()


class Shell:
    """The task's shell: its state and, under bubblewrap, its persistent jail."""

    def __init__(self, state: ShellState | None = None) -> None:
        self.state = state or ShellState()
        self.session: JailSession | None = None
        self.sessions_started = 0
        self.defaults_tried = False  # the venv's default packages were linked (or tried) this run
        self._lock = threading.Lock()

    async def run(self, argv: list[str], *, workspace: Workspace, settings: Settings,
                  timeout: float, limits: Limits) -> CommandResult:  # noqa: ASYNC109
        """Run `argv` in the state's folder and environment (see run_jailed for what raises)."""
        if sandbox_mode(settings) != "bwrap":
            return await run_jailed(argv, workspace=workspace, settings=settings,
                                    timeout=timeout, cwd=self.state.cwd, env=self.state.env,
                                    limits=limits, venv=self.state.venv)
        return await asyncio.to_thread(self._run_sync, list(argv), workspace, settings,
                                       timeout, limits)

    def _run_sync(self, argv: list[str], workspace: Workspace, settings: Settings,
                  timeout: float, limits: Limits) -> CommandResult:
        if not argv:
            raise ValueError("empty command")
        with self._lock:
            root, rel_cwd, _, disk = prepare(workspace, settings, self.state.cwd, limits)
            start = time.perf_counter()
            session = self._session(workspace, settings, limits)
            before = session.figures()
            env = jail_env(JAIL_WORKSPACE, active_venv(root, self.state.venv), self.state.env)
            fin = session.run(argv, cwd=os.path.normpath(f"{JAIL_WORKSPACE}/{rel_cwd}"),
                              env=env, timeout=timeout, guard=disk.check)
            after = session.figures() if session.alive() else before
            kills = int(after.get("oom_kills", 0)) - int(before.get("oom_kills", 0))
            figures = {**after, "oom": kills > 0}
            return command_result(fin, disk, start, "bwrap", timeout, limits, settings, figures)

    def _session(self, workspace: Workspace, settings: Settings, limits: Limits) -> JailSession:
        if self.session is not None and (not self.session.alive()
                                         or self.session.limits != limits):
            self.session.close()
            self.session = None
        if self.session is None:
            self.session = JailSession(workspace, settings, limits)
            self.sessions_started += 1
        return self.session

    def close(self) -> None:
        with self._lock:
            if self.session is not None:
                self.session.close()
                self.session = None

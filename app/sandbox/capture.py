"""Run one child process with a wall-clock deadline and capped output capture.

The child is the leader of a new session; on timeout, on an output flood and once it has
exited, its whole process group is SIGKILLed (before it is reaped, so the group id cannot have
been reused). Output is read in chunks: the head and the tail are kept, the middle is counted
and dropped, so gigabytes of output never sit in memory. CPU time and peak RSS come from
wait4's rusage, which covers every descendant the child reaped (bubblewrap's init reaps all).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from app.sandbox import reaper

EXIT_GRACE_S = 0.1  # after the child exits, how long stragglers may still flush output
GUARD_EVERY_S = 0.25


class Capture:
    """Keeps the first and last `cap // 2` bytes of a stream and counts the rest."""

    def __init__(self, cap: int) -> None:
        self.half = max(cap // 2, 1)
        self.head = bytearray()
        self.tail: deque[bytes] = deque()
        self.tail_len = 0
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.half - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if not chunk:
            return
        self.tail.append(chunk)
        self.tail_len += len(chunk)
        while self.tail_len - len(self.tail[0]) >= self.half:
            self.tail_len -= len(self.tail.popleft())

    def text(self) -> tuple[str, bool]:
        """The kept text and whether anything was cut."""
        tail = b"".join(self.tail)[-self.half :]
        cut = self.total - len(self.head) - len(tail)
        head_s = self.head.decode("utf-8", errors="replace")
        tail_s = tail.decode("utf-8", errors="replace")
        if cut <= 0:
            return head_s + tail_s, False
        return f"{head_s}\n…[{cut} bytes of output cut]…\n{tail_s}", True


@dataclass
class Finished:
    """What `execute` observed."""

    exit_code: int
    capture: Capture
    timed_out: bool
    flooded: bool
    cpu_s: float
    peak_rss_kb: int
    stopped: str = ""  # why the guard killed it (the disk cap)
    note: str = ""  # anything else the model should know (a persistent jail that ended)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _no_guard() -> str:
    return ""


def execute(
    argv: list[str], *, env: dict[str, str], cwd: str, preexec: Callable[[], None],
    timeout: float, keep_bytes: int, kill_after_bytes: int,
    guard: Callable[[], str] = _no_guard, pass_fds: tuple[int, ...] = (),
) -> Finished:
    """Run `argv` to completion or until the deadline; blocking (call from a thread).

    `guard` is asked every `GUARD_EVERY_S` while the command runs; a non-empty answer kills
    it (the disk cap) and is returned as `Finished.stopped`."""
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=env, cwd=cwd, preexec_fn=preexec, start_new_session=True, close_fds=True,
        pass_fds=pass_fds,
    )
    reaper.register(proc.pid)
    assert proc.stdout is not None
    cap = Capture(keep_bytes)
    pid_fd = os.pidfd_open(proc.pid)
    stopped = ""
    try:
        timed_out, flooded, stopped = _pump(
            proc.stdout.fileno(), pid_fd, cap, time.monotonic() + timeout, kill_after_bytes,
            guard,
        )
    finally:
        _kill_group(proc.pid)  # before reaping: the zombie leader keeps the group id ours
        _, status, usage = os.wait4(proc.pid, 0)
        reaper.unregister(proc.pid)
        proc.returncode = os.waitstatus_to_exitcode(status)
        os.close(pid_fd)
        proc.stdout.close()
    return Finished(
        exit_code=proc.returncode, capture=cap, timed_out=timed_out, flooded=flooded,
        cpu_s=usage.ru_utime + usage.ru_stime, peak_rss_kb=usage.ru_maxrss, stopped=stopped,
    )


def _pump(
    out_fd: int, pid_fd: int, cap: Capture, deadline: float, kill_after: int,
    guard: Callable[[], str],
) -> tuple[bool, bool, str]:
    """Read output until EOF and exit (or deadline / flood / guard);
    returns (timed_out, flooded, why the guard stopped it)."""
    eof = False
    exited_at: float | None = None
    next_guard = time.monotonic() + GUARD_EVERY_S
    with selectors.DefaultSelector() as sel:
        sel.register(out_fd, selectors.EVENT_READ, "out")
        sel.register(pid_fd, selectors.EVENT_READ, "exit")
        while not (eof and exited_at is not None):
            now = time.monotonic()
            if now >= next_guard and exited_at is None:
                next_guard = now + GUARD_EVERY_S
                why = guard()
                if why:
                    return False, False, why
            limit = deadline if exited_at is None else min(deadline, exited_at + EXIT_GRACE_S)
            if now >= limit:
                return exited_at is None, False, ""
            wake = limit if exited_at is not None else min(limit, next_guard)
            for key, _ in sel.select(max(wake - now, 0.001)):
                if key.data == "exit":
                    exited_at = time.monotonic()
                    sel.unregister(pid_fd)
                    continue
                chunk = os.read(out_fd, 65536)
                if not chunk:
                    eof = True
                    sel.unregister(out_fd)
                    continue
                cap.add(chunk)
                if cap.total > kill_after:
                    return False, True, ""
    return False, False, ""

"""The program inside a task's persistent jail: runs the commands the host feeds it, one at a time.

Started once per task by app.sandbox.shell (`python -I -S -c <this file's source>` under
bubblewrap), so it imports nothing but the standard library. It holds no state of its own: each
request carries the command's argv, folder and whole environment, decided on the host.

    host -> server, one JSON line each      {"op": "run", "argv": [...], "cwd": "/workspace/x",
                                              "env": {...}, "timeout": s, "kill_after": bytes}
                                             {"op": "kill", "why": "..."}   (while one runs)
    server -> host, frames: kind (1 byte), length (4 bytes, big-endian), payload
        b"r"  ready (once, at start)          b"o"  a chunk of the command's output
        b"d"  done: JSON exit_code, timed_out, flooded, stopped, cpu_s, peak_rss_kb, error

After every command, whatever it left running (a daemon that called setsid, a forked child) is
SIGKILLed with kill(-1): in the jail's own pid namespace that is every process but this one and
bubblewrap's init. The server makes itself non-dumpable, so a command running as the same uid
can neither ptrace it nor open its pipes through /proc.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import struct
import subprocess
import sys
import time

CHUNK = 65536
EXIT_GRACE_S = 0.1
MAX_REQUEST = 4 * 1024 * 1024
PR_SET_DUMPABLE = 4


def frame(kind: bytes, payload: bytes) -> None:
    data = kind + struct.pack(">I", len(payload)) + payload
    while data:
        data = data[os.write(1, data):]


class Lines:
    """Newline-delimited requests from the host on fd 0."""

    def __init__(self) -> None:
        self.buf = b""
        self.closed = False

    def feed(self) -> None:
        chunk = os.read(0, CHUNK)
        if not chunk:
            self.closed = True
        self.buf += chunk
        if len(self.buf) > MAX_REQUEST and b"\n" not in self.buf:
            self.closed = True  # not a request the host would send

    def take(self) -> dict[str, object] | None:
        line, sep, rest = self.buf.partition(b"\n")
        if not sep:
            return None
        self.buf = rest
        try:
            found = json.loads(line)
        except ValueError:
            return {}
        return found if isinstance(found, dict) else {}


def kill_the_rest(deadline_s: float = 2.0) -> bool:
    """SIGKILL every process of the jail but this one and init; True once none is left."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            return True
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        time.sleep(0.001)  # zombies handed to init: it reaps them
    return False


def spawn_error(argv: list[str], cwd: str, exc: OSError) -> dict[str, object]:
    if not os.path.isdir(cwd):
        return {"exit_code": 127, "error": f"the current folder {cwd} no longer exists"}
    if isinstance(exc, FileNotFoundError):
        return {"exit_code": 127, "error": f"{argv[0]}: command not found"}
    return {"exit_code": 126, "error": f"{argv[0]}: {exc.strerror or exc}"}


def run(req: dict[str, object], lines: Lines) -> dict[str, object]:
    argv = [str(a) for a in req.get("argv") or []]  # type: ignore[attr-defined]
    cwd = str(req.get("cwd") or "/workspace")
    env = {str(k): str(v) for k, v in dict(req.get("env") or {}).items()}  # type: ignore[call-overload]
    timeout = float(req.get("timeout") or 120)  # type: ignore[arg-type]
    kill_after = int(req.get("kill_after") or 64 * 1024 * 1024)  # type: ignore[call-overload]
    if not argv:
        return {"exit_code": 2, "error": "empty command"}
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    except OSError as exc:
        return spawn_error(argv, cwd, exc)
    assert proc.stdout is not None
    out = proc.stdout.fileno()
    pid_fd = os.pidfd_open(proc.pid)
    deadline = time.monotonic() + timeout
    total, exited_at, eof = 0, None, False
    timed_out = flooded = False
    stopped = ""
    sel = selectors.DefaultSelector()
    sel.register(out, selectors.EVENT_READ, "out")
    sel.register(pid_fd, selectors.EVENT_READ, "exit")
    sel.register(0, selectors.EVENT_READ, "host")
    try:
        while not (eof and exited_at is not None):
            now = time.monotonic()
            limit = deadline if exited_at is None else min(deadline, exited_at + EXIT_GRACE_S)
            if now >= limit:
                timed_out = exited_at is None
                break
            for key, _ in sel.select(limit - now):
                if key.data == "exit":
                    exited_at = time.monotonic()
                    sel.unregister(pid_fd)
                elif key.data == "host":
                    lines.feed()
                    msg = lines.take()
                    if lines.closed or (msg or {}).get("op") == "kill":
                        stopped = str((msg or {}).get("why") or "stopped by the host")
                        break
                else:
                    chunk = os.read(out, CHUNK)
                    if not chunk:
                        eof = True
                        sel.unregister(out)
                        continue
                    total += len(chunk)
                    frame(b"o", chunk)
                    if total > kill_after:
                        flooded = True
                        break
            if stopped or flooded:
                break
    finally:
        sel.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # before reaping: the group id is still ours
        _, status, usage = os.wait4(proc.pid, 0)
        os.close(pid_fd)
        proc.stdout.close()
        clean = kill_the_rest()
    return {
        "exit_code": os.waitstatus_to_exitcode(status), "timed_out": timed_out,
        "flooded": flooded, "stopped": stopped, "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_kb": usage.ru_maxrss, "clean": clean,
    }


def main() -> None:
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    lines = Lines()
    frame(b"r", json.dumps({"pid": os.getpid()}).encode())
    while not lines.closed:
        req = lines.take()
        if req is None:
            lines.feed()
            continue
        if req.get("op") != "run":
            continue
        frame(b"d", json.dumps(run(req, lines)).encode())
    sys.exit(0)


if __name__ == "__main__":
    main()

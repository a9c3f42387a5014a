"""What every attack needs: a host folder that must never change or leak, and a way to plant
what the jail could leave in a workspace (links, hard links, FIFOs, sockets, devices)."""

from __future__ import annotations

import os
import secrets
import socket
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# One planted thing per kind; each is a distinct attack on the path it is planted at.
LEAF_KINDS = ["symlink", "hardlink", "fifo", "socket", "device"]
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d4944415478da63f8cfc0f01f0005000201a3f1e3a70000000049454e44ae426082")


@dataclass
class Host:
    """Files outside any workspace that an attack tries to read, write or leak."""

    root: Path
    secret: str
    sockets: list[socket.socket] = field(default_factory=list)

    @property
    def file(self) -> Path:
        return self.root / "secret.txt"

    def snapshot(self) -> list[tuple[str, bytes, int, int, int]]:
        out = []
        for path in sorted(self.root.rglob("*")):
            st = path.lstat()
            body = path.read_bytes() if stat.S_ISREG(st.st_mode) else b""
            out.append((str(path), body, st.st_mtime_ns, st.st_mode, st.st_uid))
        return out

    def plant(self, root: Path, rel: str, kind: str, target: Path | None = None) -> Path:
        """Put a `kind` at root/rel as a jailed process could (the parent made real)."""
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.exists():
            if path.is_dir() and not path.is_symlink():
                import shutil

                shutil.rmtree(path)
            else:
                path.unlink()
        target = target or self.file
        if kind == "symlink":
            path.symlink_to(target)
        elif kind == "hardlink":
            os.link(target, path)
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "socket":
            self.sockets.append(_bind_unix(path))
        elif kind == "device":  # /dev/zero: endless bytes if anyone reads it
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 5))
        elif kind == "dir":
            path.mkdir()
        else:
            raise ValueError(kind)
        return path


def _bind_unix(path: Path) -> socket.socket:
    """A listening AF_UNIX socket at `path` (bound from its folder: long paths do not fit)."""
    sock = socket.socket(socket.AF_UNIX)
    here = os.getcwd()
    os.chdir(path.parent)
    try:
        sock.bind(path.name)
    finally:
        os.chdir(here)
    return sock


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    if os.geteuid() != 0:
        pytest.skip("device nodes and chown attacks need root (the service runs as root)")
    root = tmp_path / "host"
    root.mkdir()
    token = "HOST-SECRET-" + secrets.token_hex(8)
    h = Host(root, token)
    h.file.write_text(token + "\n")
    (root / "tool").write_text("#!/usr/bin/python3\nprint('host tool')\n")
    (root / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (root / "image.png").write_bytes(PNG)
    (root / "sub").mkdir()
    (root / "sub" / "inner.txt").write_text(token)
    before = h.snapshot()
    yield h
    for sock in h.sockets:
        sock.close()
    assert h.snapshot() == before, "a host file outside the workspace changed"


@contextmanager
def no_hang(seconds: float = 10.0) -> Iterator[None]:
    """Fail (instead of freezing the suite) when the block blocks, e.g. on a FIFO."""
    import signal

    def boom(*_: object) -> None:
        raise TimeoutError(f"blocked for more than {seconds}s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)

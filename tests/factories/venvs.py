"""Venvs of their own for outside tools the suite drives, made from their locks (tests/locks/).

    locked_venv(name)   the venv of tests/locks/<name>.txt: every package pinned with its
                        hashes, installed by uv; made once under ~/.cache/taskbench and reused
                        while the lock and the interpreter stay the same
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

LOCKS = Path(__file__).resolve().parent.parent / "locks"
CACHE = Path.home() / ".cache" / "taskbench"
INSTALL_TIMEOUT_S = 600


def locked_venv(name: str) -> Path:
    """The venv holding exactly tests/locks/`name`.txt. A failed install raises with uv's
    own words (never a skip: the suite runs what the lock says, or says why it cannot)."""
    lock = LOCKS / f"{name}.txt"
    key = hashlib.sha256(lock.read_bytes() + sys.version.encode()).hexdigest()[:12]
    home = CACHE / f"{name}-{key}"
    done = home / ".complete"  # written last: a run killed halfway leaves no venv to take
    if done.exists():
        return home
    home.parent.mkdir(parents=True, exist_ok=True)
    # one maker at a time (the suite and a benchmark may ask at once); the one that waited
    # finds the venv made
    with open(home.with_name(home.name + ".lock"), "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(home, ignore_errors=True)
            _uv("venv", "-q", "--python", sys.executable, str(home))
            _uv("pip", "install", "-q", "--python", str(home / "bin" / "python"),
                "--require-hashes", "-r", str(lock))
            done.write_text(lock.name + "\n")
    return home


def _uv(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "uv", *args], capture_output=True, text=True,
                          timeout=INSTALL_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"uv {' '.join(args[:2])} failed: {done.stderr[-3000:]}")

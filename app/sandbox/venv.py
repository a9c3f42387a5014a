"""Per-task virtual environments: made with uv when present, else `python -m venv`.

Most of a `uv venv` is asking the interpreter about itself (~100 ms); with a cache outside the
workspace (`cache_dir`, the runner passes var/cache/uv) uv remembers the answer and a fresh venv
takes ~10 ms. The cache holds interpreter metadata only, never anything a task wrote.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from pathlib import Path


@functools.cache
def uv_binary() -> str | None:
    """The uv executable: the PyPI package's binary first, which PATH may hide behind a slow
    wrapper (a pyenv shim costs ~60 ms per call), then whatever PATH finds."""
    try:
        from uv import find_uv_bin  # the PyPI package ships the binary

        return str(find_uv_bin())
    except Exception:  # noqa: BLE001 - any failure means "look on PATH"
        return shutil.which("uv")


def create_venv(path: Path, *, python: str | None = None, cache_dir: Path | None = None) -> str:
    """Create a venv at `path` unless one is there; returns the tool that made it."""
    if (path / "pyvenv.cfg").exists():
        return "existing"
    python = python or sys.executable
    uv = uv_binary()
    if uv:
        # HOME=/nonexistent and the cache (if any) outside: nothing of uv's lands in the workspace
        cache = {"UV_CACHE_DIR": str(cache_dir)} if cache_dir else {"UV_NO_CACHE": "1"}
        subprocess.run(
            [uv, "venv", "--quiet", "--python", python, str(path)],
            check=True, capture_output=True, timeout=120,
            env={"PATH": "/usr/bin:/bin", "UV_NO_CONFIG": "1", "HOME": "/nonexistent", **cache},
        )
        return "uv"
    subprocess.run([python, "-m", "venv", "--without-pip", str(path)], check=True,
                   capture_output=True, timeout=300)
    return "venv"

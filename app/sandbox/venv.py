"""Per-task virtual environments: made with uv when present, else `python -m venv`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def uv_binary() -> str | None:
    found = shutil.which("uv")
    if found:
        return found
    try:
        from uv import find_uv_bin  # the PyPI package ships the binary

        return str(find_uv_bin())
    except Exception:  # noqa: BLE001 - any failure means "no uv"
        return None


def create_venv(path: Path, *, python: str | None = None) -> str:
    """Create a venv at `path` unless one is there; returns the tool that made it."""
    if (path / "pyvenv.cfg").exists():
        return "existing"
    python = python or sys.executable
    uv = uv_binary()
    if uv:
        subprocess.run(
            [uv, "venv", "--quiet", "--python", python, str(path)],
            check=True, capture_output=True, timeout=120,
            # No cache and HOME=/nonexistent: nothing of uv's lands in the workspace.
            env={"PATH": "/usr/bin:/bin", "UV_NO_CONFIG": "1", "UV_NO_CACHE": "1",
                 "HOME": "/nonexistent"},
        )
        return "uv"
    subprocess.run([python, "-m", "venv", "--without-pip", str(path)], check=True,
                   capture_output=True, timeout=300)
    return "venv"

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

from app.sandbox import fs


@functools.cache
def uv_binary() -> str | None:
    """The uv executable: the PyPI package's binary first, which PATH may hide behind a slow
    wrapper (a pyenv shim costs ~60 ms per call), then whatever PATH finds."""
    try:
        from uv import find_uv_bin  # the PyPI package ships the binary

        return str(find_uv_bin())
    except Exception:  # noqa: BLE001 - any failure means "look on PATH"
        return shutil.which("uv")


def venv_is_plain(root: Path, name: str = ".venv") -> bool:
    """Whether root/name is a venv whose own folders (bin, lib, lib/python*/site-packages)
    are real directories, so host tools writing into it stay inside the workspace."""
    try:
        if fs.kind(root, f"{name}/pyvenv.cfg") != "file" or fs.kind(root, f"{name}/bin") != "dir":
            return False
        if fs.kind(root, f"{name}/lib") is None:
            return True
        for entry in fs.listdir(root, f"{name}/lib"):
            if entry.kind != "dir" or fs.kind(root, f"{name}/lib/{entry.name}/site-packages") \
                    not in (None, "dir"):
                return False
    except fs.PathRefused:  # a link on the way: .venv itself, bin or lib
        return False
    return True


def create_venv(path: Path, *, python: str | None = None, cache_dir: Path | None = None) -> str:
    """Create a venv at `path` unless a plain one is there; returns the tool that made it.

    A .venv that is a link, or holds links where its own folders should be (planted by the
    jail to make host tools write elsewhere), is removed (the link, never its target) first."""
    root, name = path.parent, path.name
    if venv_is_plain(root, name):
        return "existing"
    if fs.kind(root, name) is not None:
        fs.remove(root, name)
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

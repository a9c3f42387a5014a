"""The local wheel cache a task's venv is filled from: var/wheels, the host's, read-only to tasks.

    ensure(settings, packages)   the wheels of `packages` (and what they need) are in the cache;
                                 downloaded once (pip, binary wheels only, the host's index
                                 settings) under a lock, never per task
    missing(settings, packages)  which of them have no wheel in the cache yet

Tasks never see this folder: uv reads it on the host (`--no-index --find-links`) into a fresh
staging prefix that is then copied into the task's venv inside the jail (app.tools.packages),
so no task can change what another installs. Files are root's, 0644; the folder 0755.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from app.core.config import Settings

DOWNLOAD_TIMEOUT_S = 600


def wheel_dir(settings: Settings) -> Path:
    return Path(settings.var_dir) / "wheels"


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _project(spec: str) -> str:
    return _normal(re.split(r"[\[<>=!~ ;]", spec.strip(), maxsplit=1)[0])


def missing(settings: Settings, packages: list[str]) -> list[str]:
    """Packages with no wheel in the cache (by project name; versions are uv's to resolve)."""
    folder = wheel_dir(settings)
    have = {_normal(p.name.split("-", 1)[0]) for p in folder.glob("*.whl")} if folder.is_dir() \
        else set()
    return [p for p in packages if _project(p) not in have]


def ensure(settings: Settings, packages: list[str]) -> list[str]:
    """Fill the cache with `packages` and their dependencies if any is missing; returns what
    was downloaded (empty when the cache had everything). Raises RuntimeError with pip's own
    words when a package cannot be fetched."""
    if not packages or not missing(settings, packages):
        return []
    folder = wheel_dir(settings)
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    with open(folder.parent / ".wheels.lock", "w") as lock:  # the host's own var/ folder
        fcntl.flock(lock, fcntl.LOCK_EX)
        todo = missing(settings, packages)
        if not todo:
            return []
        with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".wheels-") as tmp:
            done = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
                 "--dest", tmp, *packages],
                capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S, check=False,
                env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
            if done.returncode:
                raise RuntimeError(f"could not fetch wheels for {', '.join(todo)}: "
                                   f"{(done.stderr or done.stdout).strip()[-1000:]}")
            fetched = []
            for wheel in Path(tmp).glob("*.whl"):
                target = folder / wheel.name
                if not target.exists():
                    shutil.move(str(wheel), target)
                    target.chmod(0o644)
                    fetched.append(wheel.name)
        return fetched

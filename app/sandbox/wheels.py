"""The local wheel cache and the shared base layer a task's venv gets its default packages from.

    ensure(settings, packages)      the wheels of `packages` (and what they need) are in the
                                    cache var/wheels; downloaded once (pip, binary wheels only,
                                    the host's index settings) under a lock, never per task
    missing(settings, packages)     which of them have no wheel in the cache yet
    base_layer(settings, packages)  var/venv-base/<key>: those packages installed once by uv
                                    (`--target`, no index: only the cache, no bytecode, nothing
                                    run) into a root-owned folder; built under a lock, then
                                    renamed into place whole
    link_base(root, layer)          a task's venv sees the layer: one .pth file in its
                                    site-packages naming the layer's path in the jail

Tasks never see the wheel cache. The layers are bound read-only into every jail at
BASE_IN_JAIL, so a fresh venv is useful at once (no install per task, no copy) and no task can
change what another imports; packages a task installs itself into .venv come first on sys.path.
Files are root's, 0644; folders 0755.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from app.core.config import Settings
from app.sandbox import fs
from app.sandbox.venv import uv_binary

DOWNLOAD_TIMEOUT_S = 600
BUILD_TIMEOUT_S = 600
RETRY_AFTER_S = 600.0
BASE_IN_JAIL = "/opt/taskbench-base"
PTH = "_taskbench_base.pth"
SITE = f".venv/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
_failed: dict[str, tuple[float, str]] = {}  # layer path -> (when, why) of the last failure


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


def layers_dir(settings: Settings) -> Path:
    return Path(settings.var_dir) / "venv-base"


def layer_key(packages: list[str]) -> str:
    """One layer per package set and interpreter version."""
    basis = json.dumps([sorted(packages), list(sys.version_info[:2])])
    return hashlib.sha256(basis.encode()).hexdigest()[:16]


def base_layer(settings: Settings, packages: list[str]) -> Path | None:
    """The layer holding `packages` (built now if missing: wheels fetched once into the
    cache, then installed from it alone); None for no packages. RuntimeError says why it could
    not be built (pip's or uv's own words); after a failure this process does not try the
    same set again for RETRY_AFTER_S (an offline host is not asked per task)."""
    if not packages:
        return None
    folder = layers_dir(settings)
    key = layer_key(packages)
    final = folder / key
    if final.is_dir():
        return final
    failed = _failed.get(str(final))
    if failed and time.monotonic() - failed[0] < RETRY_AFTER_S:
        raise RuntimeError(failed[1])
    try:
        return _build(settings, packages, final)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        _failed[str(final)] = (time.monotonic(), str(exc))
        raise RuntimeError(str(exc)) from exc


def _build(settings: Settings, packages: list[str], final: Path) -> Path:
    folder = final.parent
    ensure(settings, packages)
    uv = uv_binary()
    if not uv:
        raise RuntimeError("uv is not available on this worker")
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    with open(folder.parent / ".venv-base.lock", "w") as lock:  # the host's own var/ folder
        fcntl.flock(lock, fcntl.LOCK_EX)
        if final.is_dir():
            return final
        tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".build-"))
        try:
            done = subprocess.run(
                [uv, "pip", "install", "--quiet", "--python", sys.executable, "--target",
                 str(tmp), "--no-index", "--find-links", str(wheel_dir(settings)),
                 "--no-build", "--link-mode", "copy", *packages],
                capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False,
                env={**os.environ, "UV_COMPILE_BYTECODE": "0", "UV_NO_CONFIG": "1"})
            if done.returncode:
                raise RuntimeError(f"could not build the base layer for {', '.join(packages)}: "
                                   f"{(done.stderr or done.stdout).strip()[-1000:]}")
            for dirpath, _dirs, filenames in os.walk(tmp):
                os.chmod(dirpath, 0o755)  # noqa: S103 - readable by every task's uid, by design
                for name in filenames:
                    os.chmod(os.path.join(dirpath, name), 0o644)
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def link_base(root: Path, layer: Path) -> None:
    """Make the task's venv at `root`/.venv import from `layer` (through the jail's bind)."""
    fs.write_text(root, f"{SITE}/{PTH}", f"{BASE_IN_JAIL}/{layer.name}\n")

"""Helpers for the sandbox attack tests: workspaces, a jailed run, a failing bubblewrap."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from app.core.config import Settings
from app.sandbox import cgroups
from app.sandbox.jail import CommandResult, run_jailed
from app.sandbox.limits import Limits
from app.sandbox.uids import release
from app.sandbox.workspace import Workspace

NEEDS_BWRAP = pytest.mark.skipif(not shutil.which("bwrap"), reason="bubblewrap not installed")
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="per-task uids need a root worker")


def needs_cgroup() -> pytest.MarkDecorator:
    backend = cgroups.detect(Settings())
    return pytest.mark.skipif(not backend.version, reason=f"no cgroup here: {backend.reason}")


@contextmanager
def workspace(name: str = "ws") -> Iterator[Workspace]:
    """A workspace under a world-traversable temp dir (the fallback mode has no mount staging),
    its uid given back at the end."""
    base = Path(tempfile.mkdtemp(prefix=f"tb-sec-{name}-"))
    os.chmod(base, 0o755)  # noqa: S103 - traversal only; each workspace root is 0700
    ws = Workspace(base / name)
    ws.create(title="t", description="d")
    try:
        yield ws
    finally:
        release(ws.root)
        shutil.rmtree(base, ignore_errors=True)


async def jailed(ws: Workspace, *argv: str, settings: Settings | None = None,
                 timeout: float = 20, limits: Limits | None = None) -> CommandResult:
    return await run_jailed(list(argv), workspace=ws, settings=settings or Settings(),
                            timeout=timeout, limits=limits)


def failing_bwrap(*, fail_times: int) -> Path:
    """A bwrap on disk that fails like a namespace EAGAIN `fail_times` times, then works.

    It runs as the task's uid (the worker drops privileges before exec), so its folder is
    open to all; the caller removes it."""
    tmp = Path(tempfile.mkdtemp(prefix="tb-fakebwrap-"))
    counter = tmp / "bwrap-calls"
    script = tmp / "bwrap"
    script.write_text(
        "#!/bin/sh\n"
        f"n=$(cat {counter} 2>/dev/null || echo 0)\n"
        f"echo $((n+1)) > {counter}\n"
        f"if [ \"$n\" -lt {fail_times} ]; then\n"
        "  echo 'bwrap: Creating new namespace failed: Resource temporarily unavailable' >&2\n"
        "  exit 1\n"
        "fi\n"
        f"exec {shutil.which('bwrap')} \"$@\"\n")
    script.chmod(0o755)
    counter.write_text("0")
    counter.chmod(0o666)  # noqa: S103 - each task uid that runs the fake counts in it
    os.chmod(tmp, 0o777)  # noqa: S103 - the fake counts its calls as whatever uid runs it
    return script

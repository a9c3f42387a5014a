"""A task's workspace: workspaces/<agent>/<task>/ with src/, output/, research/, README.md, .venv/.

`Workspace.resolve` checks a name an agent gives for the jail (a command's working directory);
every host-side read or write of a file in here goes through app.sandbox.fs, which never
follows a link (the README, the lock file and the layout below included).
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import logging
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from app.sandbox import fs
from app.sandbox.fs import PathRefused

__all__ = ["PHASES", "PathRefused", "Workspace", "prune_workspaces"]
log = logging.getLogger(__name__)

PHASES = ("design", "build", "test", "review", "complete")
SUBDIRS = ("src", "output", "research")
LOCK_NAME = ".taskbench.lock"


def _safe_segment(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".") or "_"
    return cleaned[:64]


def safe_segment_sql(column: str) -> str:
    """_safe_segment in PostgreSQL's SQL, of `column` (a task's lease records its workspace in
    the same statement: app.run.lease_postgres)."""
    return (f"left(COALESCE(NULLIF(btrim(regexp_replace({column}, '[^A-Za-z0-9_.-]', '_', "
            f"'g'), '.'), ''), '_'), 64)")


@functools.cache
def workspaces_root(base: Path) -> str:
    """`base` resolved, as Workspace.for_task's paths begin (once a process)."""
    return str(Path(base).resolve())


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def for_task(cls, base: Path, agent: str, task_id: int) -> Workspace:
        return cls((Path(base) / _safe_segment(agent) / str(int(task_id))).resolve())

    @property
    def src(self) -> Path:
        return self.root / "src"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def research(self) -> Path:
        return self.root / "research"

    @property
    def venv(self) -> Path:
        return self.root / ".venv"

    @property
    def readme(self) -> Path:
        return self.root / "README.md"

    def create(self, *, title: str, description: str) -> None:
        """Lay the workspace out (idempotent: an existing workspace is kept as it is)."""
        self.root.mkdir(parents=True, exist_ok=True)  # host-made path; links inside are not
        for sub in SUBDIRS:
            if fs.kind(self.root, sub) not in (None, "dir"):
                fs.remove(self.root, sub)  # a link planted in place of our layout goes
            fs.makedirs(self.root, sub)
        if fs.kind(self.root, "README.md") is None:
            self.write_readme(title=title, description=description, done=())

    def write_readme(
        self, *, title: str, description: str, done: tuple[str, ...] | list[str]
    ) -> None:
        lines = [f"# {title}", "", description or "(no description)", "", "## Progress", ""]
        for phase in PHASES:
            mark = "x" if phase in done else " "
            lines.append(f"- [{mark}] {phase.capitalize()}")
        try:  # replaces a planted link at the name, never writes through it
            fs.write_text(self.root, "README.md", "\n".join(lines) + "\n")
        except PathRefused as exc:  # e.g. a directory named README.md: the checklist waits
            log.warning("README not rewritten in %s: %s", self.root, exc)

    def resolve(self, rel: str, *, must_exist: bool = False) -> Path:
        """The absolute path of `rel` inside the workspace, or PathRefused saying why."""
        if not isinstance(rel, str) or not rel.strip():
            raise PathRefused("path must be a non-empty string relative to the workspace")
        if "\x00" in rel:
            raise PathRefused("path contains a NUL byte")
        if rel.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", rel):
            raise PathRefused(f"absolute paths are not allowed: {rel!r}")
        parts = Path(rel).parts
        if ".." in parts:
            raise PathRefused(f"'..' is not allowed in paths: {rel!r}")
        candidate = self.root / rel
        real = Path(os.path.realpath(candidate))
        root = Path(os.path.realpath(self.root))
        if real != root and root not in real.parents:
            raise PathRefused(f"path leaves the workspace (symlink?): {rel!r}")
        if must_exist and not real.exists():
            raise PathRefused(f"no such file in the workspace: {rel!r}")
        return real

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK_NAME

    def mark_shared(self) -> None:
        """Note that other tasks work here too: from now on tool calls take the lock."""
        os.close(self._open_lock())

    @property
    def shared(self) -> bool:
        return fs.kind(self.root, LOCK_NAME) is not None

    @asynccontextmanager
    async def lock(self) -> AsyncIterator[None]:
        """Serialize tool calls of the tasks sharing this workspace (an flock on its lock file)."""
        fd = await asyncio.to_thread(self._open_lock)
        try:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _open_lock(self) -> int:
        try:
            return fs.open_lock(self.root, LOCK_NAME)
        except PathRefused:  # a link, FIFO or folder planted at our lock: ours again
            fs.remove(self.root, LOCK_NAME)
            return fs.open_lock(self.root, LOCK_NAME)

    def relative(self, path: Path) -> str:
        return str(Path(os.path.realpath(path)).relative_to(os.path.realpath(self.root)))


def prune_workspaces(base: Path, older_than_s: float) -> list[Path]:
    """Remove task workspaces not modified for `older_than_s` seconds; returns what went."""
    removed: list[Path] = []
    cutoff = time.time() - older_than_s
    if not base.exists():
        return removed
    for agent_dir in base.iterdir():
        if not agent_dir.is_dir() or agent_dir.is_symlink():
            continue
        for task_dir in agent_dir.iterdir():
            stale = task_dir.is_dir() and not task_dir.is_symlink()
            if stale and task_dir.stat().st_mtime < cutoff:
                shutil.rmtree(task_dir, ignore_errors=True)
                removed.append(task_dir)
    return removed

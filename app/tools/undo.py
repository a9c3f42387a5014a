"""The previous versions of edited files, for `undo_edit`: kept on the host beside the task's
workspace (workspaces/<agent>/.<task>.undo/, never inside it, so nothing in the jail can reach
or plant anything there), so they survive a pause, a resume and a redelivery of the task, and
go when the workspace is pruned. Bounded: `per_file` versions a file, `max_bytes` in all (the
oldest versions go first)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from app.sandbox.workspace import Workspace


@dataclass(frozen=True)
class UndoStore:
    directory: Path
    per_file: int = 10
    max_bytes: int = 8 * 1024 * 1024

    @classmethod
    def beside(cls, workspace: Workspace) -> UndoStore:
        return cls(workspace.root.parent / f".{workspace.root.name}.undo")

    def _folder(self, path: str) -> Path:
        return self.directory / hashlib.sha256(path.encode()).hexdigest()[:32]

    def _versions(self, path: str) -> list[Path]:
        folder = self._folder(path)
        return sorted(folder.iterdir()) if folder.is_dir() else []

    def push(self, path: str, content: str) -> None:
        """Keep `content` as the newest previous version of `path`."""
        versions = self._versions(path)
        number = int(versions[-1].name) + 1 if versions else 1
        self._folder(path).mkdir(parents=True, exist_ok=True, mode=0o700)
        (self._folder(path) / f"{number:08d}").write_text(content, encoding="utf-8")
        for old in (versions + [self._folder(path) / f"{number:08d}"])[:-self.per_file]:
            old.unlink()
        self._trim()

    def pop(self, path: str) -> str | None:
        """The newest previous version of `path` (now forgotten), or None."""
        versions = self._versions(path)
        if not versions:
            return None
        content = versions[-1].read_text(encoding="utf-8")
        versions[-1].unlink()
        return content

    def depth(self, path: str) -> int:
        return len(self._versions(path))

    def _trim(self) -> None:
        files = sorted((f.stat().st_mtime_ns, f.name, f) for f in self.directory.glob("*/*"))
        total = sum(f.stat().st_size for _, _, f in files)
        for _, _, f in files:
            if total <= self.max_bytes:
                break
            total -= f.stat().st_size
            os.unlink(f)

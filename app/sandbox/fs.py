"""The one safe path for every host-side read, write, listing or removal of a workspace file.

The service runs as root; a workspace is written by jailed code that may plant symlinks, hard
links, FIFOs, sockets or device nodes anywhere in it, and swap them between two host calls. So:

- every path is a name relative to a root the host chose; each component is opened from its
  parent's file descriptor (openat) with O_NOFOLLOW, directories with O_DIRECTORY: a symlink
  anywhere on the way is refused, never followed, and `..` or absolute names never get that far;
- a leaf is lstat-ed before it is opened and fstat-ed after (same inode, or refused); only
  regular files with a single link and directories pass, and every open has O_NONBLOCK, so a
  FIFO can neither be read nor block;
- new files are created with O_EXCL; a replaced file is written to a temp file created the same
  way, then renamed over the name within the same directory fd (a link at the name is replaced,
  its target untouched);
- reads take a size cap, walks an entry cap.

Errors (all carry a message fit to show to a user or a model):

    PathRefused (ValueError)     anything this module will not do
    ├── BadName                  empty, absolute, `..`, NUL, over-long
    ├── NotFound                 nothing at that path
    ├── NotAllowed               a symlink, FIFO, socket, device or hard-linked file on the way
    ├── WrongKind                a directory where a file was wanted, or the reverse
    └── TooBig                   over a size or entry cap
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096
MAX_WALK_ENTRIES = 1_000_000
MAX_DEPTH = 128
_BASE = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
_DIR = os.O_RDONLY | os.O_DIRECTORY | _BASE


class PathRefused(ValueError):
    """A workspace path the host will not read, write or list."""


class BadName(PathRefused):
    """The name itself is unusable: empty, absolute, `..`, NUL or too long."""


class NotFound(PathRefused):
    """Nothing exists at the path."""


class NotAllowed(PathRefused):
    """A symlink, FIFO, socket, device or multiply-linked file is on the path."""


class WrongKind(PathRefused):
    """A directory where a file was wanted, or the reverse."""


class TooBig(PathRefused):
    """A file or a directory tree over its cap."""


@dataclass(frozen=True)
class Entry:
    """One directory entry as lstat saw it; `path` is relative to the walk's root."""

    path: str
    name: str
    kind: str  # file | dir | link | fifo | socket | device
    size: int
    nlink: int
    mode: int
    uid: int
    gid: int
    blocks: int
    dir_fd: int = field(default=-1, compare=False, repr=False)  # valid until the walk moves on

    @property
    def safe_file(self) -> bool:
        """A regular file with one link: the only kind of file the host reads."""
        return self.kind == "file" and self.nlink == 1


def split(rel: str) -> list[str]:
    """The components of a workspace-relative name (`.` and empty parts dropped), or BadName."""
    if not isinstance(rel, str):
        raise BadName("a path must be a string")
    if "\x00" in rel:
        raise BadName("path contains a NUL byte")
    if rel.startswith(("/", "\\", "~")) or (len(rel) > 1 and rel[1] == ":"):
        raise BadName(f"absolute paths are not allowed: {rel[:200]!r}")
    if len(rel.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise BadName("path is too long")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    for part in parts:
        if part == "..":
            raise BadName(f"'..' is not allowed in paths: {rel[:200]!r}")
        if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            raise BadName(f"a path component is longer than {MAX_NAME_BYTES} bytes")
    return parts


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device"


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _refuse_kind(shown: str, st: os.stat_result, want: str) -> PathRefused:
    kind = _kind(st.st_mode)
    if kind in ("link", "fifo", "socket", "device"):
        label = "symlink" if kind == "link" else kind
        return NotAllowed(f"{shown} is a {label}; the host does not follow or open those")
    if kind == "file" and st.st_nlink > 1:
        return NotAllowed(f"{shown} has {st.st_nlink} hard links; refused")
    return WrongKind(f"{shown} is a {'directory' if kind == 'dir' else 'file'}, not a {want}")


def _open_root(root: Path) -> int:
    try:
        return os.open(root, _DIR)
    except FileNotFoundError as exc:
        raise NotFound(f"{root.name or root} does not exist") from exc
    except OSError as exc:  # ELOOP / ENOTDIR: the root itself was swapped
        raise NotAllowed(f"the root {root.name!r} is not a plain directory") from exc


def _step(dir_fd: int, name: str, shown: str, create: bool) -> int:
    """Open the subdirectory `name` of `dir_fd` without following links (mkdir if `create`)."""
    for _ in range(3):
        try:
            return os.open(name, _DIR, dir_fd=dir_fd)
        except FileNotFoundError:
            if not create:
                raise NotFound(f"{shown} does not exist") from None
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o755, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            st = _lstat(dir_fd, name)
            if st is None:
                continue
            raise _refuse_kind(shown, st, "directory") from None
    raise NotAllowed(f"{shown} keeps changing; refused")


def open_dir(root: Path, rel: str = ".", *, create: bool = False) -> int:
    """A descriptor of the directory `rel` under `root` (created, mkdir -p, if `create`)."""
    parts = split(rel)
    fd = _open_root(root)
    try:
        for i, part in enumerate(parts):
            nxt = _step(fd, part, "/".join(parts[: i + 1]), create)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def _parent(root: Path, rel: str, *, create: bool = False) -> Iterator[tuple[int, str, str]]:
    """(fd of the parent directory, leaf name, shown path) of a file path."""
    parts = split(rel)
    if not parts:
        raise BadName("a file path is needed, not the root")
    fd = open_dir(root, "/".join(parts[:-1]), create=create)
    try:
        yield fd, parts[-1], "/".join(parts)
    finally:
        os.close(fd)


def _open_leaf(dir_fd: int, name: str, shown: str) -> int:
    """Open an existing regular single-link file for reading, checking it before and after."""
    before = _lstat(dir_fd, name)
    if before is None:
        raise NotFound(f"{shown} does not exist")
    if not stat.S_ISREG(before.st_mode) or before.st_nlink > 1:
        raise _refuse_kind(shown, before, "file")
    try:
        fd = os.open(name, os.O_RDONLY | _BASE, dir_fd=dir_fd)
    except FileNotFoundError as exc:
        raise NotFound(f"{shown} does not exist") from exc
    except OSError as exc:
        raise NotAllowed(f"{shown} changed while it was opened; refused") from exc
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino) or st.st_nlink > 1:
        os.close(fd)
        raise NotAllowed(f"{shown} changed while it was opened; refused")
    return fd


def open_read(root: Path, rel: str) -> BinaryIO:
    """A regular file of the workspace, opened for reading (the caller closes it)."""
    with _parent(root, rel) as (dir_fd, name, shown):
        fd = _open_leaf(dir_fd, name, shown)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_head(root: Path, rel: str, limit: int) -> tuple[bytes, int]:
    """(the first `limit` bytes, the file's full size)."""
    with open_read(root, rel) as fh:
        size = os.fstat(fh.fileno()).st_size
        return fh.read(limit), size


def read_bytes(root: Path, rel: str, limit: int) -> bytes:
    """The whole file, or TooBig when it is larger than `limit` bytes."""
    data, size = read_head(root, rel, limit + 1)
    if size > limit or len(data) > limit:
        raise TooBig(f"{rel} is {max(size, len(data))} bytes; the limit is {limit}")
    return data


def read_text(root: Path, rel: str, limit: int) -> str:
    """The file decoded as UTF-8 (bad bytes replaced), or TooBig."""
    return read_bytes(root, rel, limit).decode("utf-8", errors="replace")


def kind(root: Path, rel: str) -> str | None:
    """What is at `rel` (file, dir, link, fifo, socket, device) without following it, or None.

    A link or other non-directory on the way to it is NotAllowed."""
    parts = split(rel)
    if not parts:
        return "dir"
    try:
        with _parent(root, rel) as (dir_fd, name, _):
            st = _lstat(dir_fd, name)
    except NotFound:
        return None
    return None if st is None else _kind(st.st_mode)


def file_size(root: Path, rel: str) -> int:
    """The size of a regular single-link file (NotFound, NotAllowed or WrongKind otherwise)."""
    with open_read(root, rel) as fh:
        return os.fstat(fh.fileno()).st_size


@contextlib.contextmanager
def atomic_writer(root: Path, rel: str, *, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Write `rel` through a temp file created exclusively, renamed over it on success."""
    with _parent(root, rel, create=True) as (dir_fd, name, shown):
        existing = _lstat(dir_fd, name)
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            raise WrongKind(f"{shown} is a directory")
        tmp = f".{name[:200]}.{secrets.token_hex(6)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _BASE, mode, dir_fd=dir_fd)
        os.set_blocking(fd, True)
        try:
            with os.fdopen(fd, "wb") as fh:
                yield fh
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise


def write_bytes(root: Path, rel: str, data: bytes, *, mode: int = 0o644) -> int:
    """Create or replace `rel` with `data` (parents made); returns the bytes written."""
    with atomic_writer(root, rel, mode=mode) as fh:
        fh.write(data)
    return len(data)


def write_text(root: Path, rel: str, text: str) -> int:
    return write_bytes(root, rel, text.encode("utf-8"))


def copy_file(src_root: Path, src_rel: str, dst_root: Path, dst_rel: str, *, limit: int) -> int:
    """Copy one regular file between two roots (both through this module); returns its size."""
    with open_read(src_root, src_rel) as src:
        size = os.fstat(src.fileno()).st_size
        if size > limit:
            raise TooBig(f"{src_rel} is {size} bytes; the limit is {limit}")
        mode = 0o755 if os.fstat(src.fileno()).st_mode & 0o111 else 0o644
        with atomic_writer(dst_root, dst_rel, mode=mode) as dst:
            shutil.copyfileobj(src, dst)
    return size


def open_lock(root: Path, rel: str) -> int:
    """A descriptor for flock on the lock file `rel` (created if missing, never followed)."""
    with _parent(root, rel) as (dir_fd, name, shown):
        try:
            return os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | _BASE, 0o600,
                           dir_fd=dir_fd)
        except FileExistsError:
            pass
        before = _lstat(dir_fd, name)
        if before is None:
            raise NotAllowed(f"{shown} keeps changing; refused")
        if not stat.S_ISREG(before.st_mode) or before.st_nlink > 1:
            raise _refuse_kind(shown, before, "file")
        fd = os.open(name, os.O_RDWR | _BASE, dir_fd=dir_fd)
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
            os.close(fd)
            raise NotAllowed(f"{shown} changed while it was opened; refused")
        return fd


def makedirs(root: Path, rel: str) -> None:
    """mkdir -p `rel` under `root`, refusing links on the way."""
    os.close(open_dir(root, rel, create=True))


def remove(root: Path, rel: str) -> bool:
    """Remove the entry at `rel` itself (a link, never its target; a directory with all it
    holds); returns whether something was there."""
    with _parent(root, rel) as (dir_fd, name, _):
        st = _lstat(dir_fd, name)
        if st is None:
            return False
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=dir_fd)
        else:
            os.unlink(name, dir_fd=dir_fd)
    return True


def _scan(fd: int, prefix: str) -> list[Entry]:
    found = []
    with os.scandir(fd) as it:
        for item in it:
            st = item.stat(follow_symlinks=False)
            found.append(Entry(f"{prefix}{item.name}", item.name, _kind(st.st_mode), st.st_size,
                               st.st_nlink, st.st_mode, st.st_uid, st.st_gid, st.st_blocks, fd))
    return sorted(found, key=lambda e: e.name)


def listdir(root: Path, rel: str = ".") -> list[Entry]:
    """The entries of one directory, sorted by name, paths relative to `rel`."""
    fd = open_dir(root, rel)
    try:
        return _scan(fd, "")
    finally:
        os.close(fd)


def walk(root: Path, rel: str = ".", *, skip: frozenset[str] = frozenset(),
         max_entries: int = MAX_WALK_ENTRIES) -> Iterator[Entry]:
    """Every entry under `rel`, depth first and sorted, paths relative to `rel`.

    Directories are entered by descriptor, never through a link, and not below MAX_DEPTH;
    names in `skip` are neither listed nor entered; TooBig after `max_entries` (to stop
    earlier without an error, use itertools.islice)."""
    first = open_dir(root, rel)
    stack: list[tuple[int, Iterator[Entry]]] = []
    count = 0
    try:
        stack.append((first, iter(_scan(first, ""))))
        while stack:
            fd, entries = stack[-1]
            entry = next(entries, None)
            if entry is None:
                os.close(stack.pop()[0])
                continue
            if entry.name in skip:
                continue
            count += 1
            if count > max_entries:
                raise TooBig(f"more than {max_entries} entries under {rel}")
            yield entry
            if entry.kind == "dir" and len(stack) < MAX_DEPTH:
                try:
                    sub = _step(fd, entry.name, entry.path, False)
                except PathRefused:  # swapped for a link since the scan: not entered
                    continue
                stack.append((sub, iter(())))
                stack[-1] = (sub, iter(_scan(sub, entry.path + "/")))
    finally:
        for fd, _ in stack:
            os.close(fd)


def files(root: Path, rel: str = ".", *, skip: frozenset[str] = frozenset()) -> Iterator[Entry]:
    """The regular single-link files under `rel` (what the host may read), walk order."""
    return (e for e in walk(root, rel, skip=skip) if e.safe_file)

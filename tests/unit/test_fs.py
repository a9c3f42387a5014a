"""app.sandbox.fs: the one safe path for host reads and writes of a workspace."""

from __future__ import annotations

import itertools
import os
import socket
from pathlib import Path

import pytest

from app.sandbox import fs


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "output" / "sub").mkdir(parents=True)
    (root / "output" / "a.txt").write_text("alpha")
    (root / "output" / "sub" / "b.txt").write_text("beta")
    return root


@pytest.fixture
def host(tmp_path: Path) -> Path:
    secret = tmp_path / "host" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("HOST SECRET")
    return secret


@pytest.mark.parametrize("name", ["", "/etc/passwd", "../x", "a/../../x", "a\x00b", "~/x",
                                  "C:/x", "x" * 256, "a/" * 2100])
def test_bad_names_are_refused(ws: Path, name: str) -> None:
    with pytest.raises(fs.BadName):
        fs.read_bytes(ws, name, 10) if name else fs.write_bytes(ws, name, b"x")


def test_reads_a_regular_file(ws: Path) -> None:
    assert fs.read_bytes(ws, "output/sub/b.txt", 100) == b"beta"
    assert fs.read_head(ws, "output/a.txt", 2) == (b"al", 5)
    with pytest.raises(fs.TooBig):
        fs.read_bytes(ws, "output/a.txt", 4)
    with pytest.raises(fs.NotFound):
        fs.read_bytes(ws, "output/none.txt", 4)
    with pytest.raises(fs.WrongKind):
        fs.read_bytes(ws, "output/sub", 4)


def test_symlinks_are_never_followed(ws: Path, host: Path) -> None:
    (ws / "output" / "leaf").symlink_to(host)
    (ws / "mid").symlink_to(host.parent)
    for rel in ("output/leaf", "mid/secret.txt"):
        with pytest.raises(fs.NotAllowed):
            fs.read_bytes(ws, rel, 100)
    with pytest.raises(fs.NotAllowed):
        fs.write_bytes(ws, "mid/new.txt", b"x")
    assert not (host.parent / "new.txt").exists()


def test_write_replaces_a_planted_link_not_its_target(ws: Path, host: Path) -> None:
    (ws / "output" / "leaf").symlink_to(host)
    fs.write_bytes(ws, "output/leaf", b"mine")
    assert host.read_text() == "HOST SECRET"
    assert not (ws / "output" / "leaf").is_symlink()
    assert (ws / "output" / "leaf").read_bytes() == b"mine"
    assert [p.name for p in (ws / "output").iterdir() if p.name.endswith(".tmp")] == []


def test_hard_links_fifos_sockets_are_refused(ws: Path, host: Path) -> None:
    os.link(host, ws / "output" / "hard")
    os.mkfifo(ws / "output" / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(ws / "output" / "sock"))
    try:
        for rel in ("output/hard", "output/fifo", "output/sock"):
            with pytest.raises(fs.NotAllowed):
                fs.read_bytes(ws, rel, 100)
    finally:
        sock.close()


def test_lock_file_is_created_once_and_never_followed(ws: Path, host: Path) -> None:
    os.close(fs.open_lock(ws, ".lock"))
    os.close(fs.open_lock(ws, ".lock"))
    (ws / ".bad").symlink_to(host)
    with pytest.raises(fs.NotAllowed):
        fs.open_lock(ws, ".bad")


def test_walk_lists_without_entering_links(ws: Path, host: Path) -> None:
    (ws / "output" / "out").symlink_to(host.parent)
    seen = {(e.path, e.kind) for e in fs.walk(ws, "output")}
    assert seen == {("a.txt", "file"), ("sub", "dir"), ("sub/b.txt", "file"), ("out", "link")}
    assert [e.path for e in fs.files(ws, "output")] == ["a.txt", "sub/b.txt"]
    assert len(list(itertools.islice(fs.walk(ws), 2))) == 2
    with pytest.raises(fs.TooBig):
        list(fs.walk(ws, max_entries=2))


def test_makedirs_remove_kind_and_copy(ws: Path, host: Path, tmp_path: Path) -> None:
    fs.makedirs(ws, "x/y/z")
    assert fs.kind(ws, "x/y/z") == "dir"
    (ws / "x" / "link").symlink_to(host.parent)
    assert fs.kind(ws, "x/link") == "link"
    assert fs.remove(ws, "x/link") and host.exists()
    assert fs.remove(ws, "x") and fs.kind(ws, "x") is None
    other = tmp_path / "other"
    other.mkdir()
    assert fs.copy_file(ws, "output/a.txt", other, "deep/a.txt", limit=10) == 5
    assert (other / "deep" / "a.txt").read_text() == "alpha"
    with pytest.raises(fs.TooBig):
        fs.copy_file(ws, "output/a.txt", other, "b.txt", limit=4)

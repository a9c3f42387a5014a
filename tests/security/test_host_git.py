"""Host-side git (issue 11, kind 3): PR staging and the push run git outside the jail, so a
repository configuration the model planted in the workspace — at the top, in a nested folder,
or as a `.git` file pointing elsewhere — and attributes asking for filters or diff drivers must
run nothing on the host. Each test plants the trap, pushes, and looks for the marker."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from app.integrations import gitops

TRAPS = ("fsmonitor", "hooks", "pager", "filter", "diff", "alias", "ssh")


def _plant_config(git_dir: Path, marker_dir: Path) -> None:
    git_dir.mkdir(parents=True, exist_ok=True)
    touch = lambda name: f"touch {marker_dir}/PWNED-{name}"  # noqa: E731
    (git_dir / "config").write_text(
        "[core]\n"
        f"\tfsmonitor = {touch('fsmonitor')}\n\thooksPath = {git_dir}/h\n"
        f"\tpager = {touch('pager')}\n\tsshCommand = {touch('ssh')}\n"
        f"[filter \"evil\"]\n\tclean = {touch('filter')}\n\tsmudge = {touch('filter')}\n"
        f"[diff \"evil\"]\n\tcommand = {touch('diff')}\n"
        f"[alias]\n\tadd = !{touch('alias')}\n"
    )
    hooks = git_dir / "h"
    hooks.mkdir(exist_ok=True)
    for name in ("pre-commit", "post-commit", "pre-push", "reference-transaction"):
        (hooks / name).write_text(f"#!/bin/sh\n{touch('hooks')}\n")
        (hooks / name).chmod(0o755)
    (git_dir / "HEAD").write_text("ref: refs/heads/main\n")
    for sub in ("objects", "refs/heads"):
        (git_dir / sub).mkdir(parents=True, exist_ok=True)


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    bare = tmp_path / "remote.git"
    seed = tmp_path / "seed"
    env = {"PATH": os.environ["PATH"], "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path),
           "GIT_CONFIG_GLOBAL": "/dev/null"}
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True, env=env)
    subprocess.run(["git", "init", "-q", "-b", "main", str(seed)], check=True, env=env)
    (seed / "README.md").write_text("seed\n")
    for argv in (["add", "."], ["-c", "user.name=s", "-c", "user.email=s@x", "commit", "-qm", "s"],
                 ["push", "-q", str(bare), "main"]):
        subprocess.run(["git", "-C", str(seed), *argv], check=True, env=env)
    return bare


@pytest.mark.parametrize("where", ["top", "nested", "gitfile"])
async def test_a_planted_repository_config_runs_nothing_on_host_git(tmp_path, remote,
                                                                    where) -> None:
    # given a workspace whose src/ carries a planted git configuration and attributes
    ws = tmp_path / "ws"
    markers = tmp_path / "markers"
    markers.mkdir()
    src = ws / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "a.py").write_text("print('a')\n")
    (src / ".gitattributes").write_text("* filter=evil diff=evil\n")
    if where == "top":
        _plant_config(src / ".git", markers)
    elif where == "nested":
        _plant_config(src / "pkg" / ".git", markers)
    else:  # a .git *file* naming a planted git dir elsewhere in the workspace
        _plant_config(ws / "elsewhere", markers)
        (src / "pkg" / ".git").write_text(f"gitdir: {ws / 'elsewhere'}\n")
    # when the service stages src/ and pushes it with host git
    stage = tmp_path / "stage"
    gitops.stage_tree(ws, "src", stage)
    pushed = await gitops.commit_and_push(
        mirror=tmp_path / "mirror.git", url=f"file://{remote}", work_tree=stage,
        branch="agent/x", base="main", message="m", author=("a", "a@x"), token=None,
        allow_file=True)
    # then nothing planted ran, and no git metadata was pushed
    assert sorted(p.name for p in markers.iterdir()) == []
    files = subprocess.run(["git", "--git-dir", str(remote), "ls-tree", "-r", "--name-only",
                            pushed.sha], check=True, capture_output=True, text=True).stdout
    assert "pkg/a.py" in files.split()
    assert not [f for f in files.split() if ".git" in f.split("/")]


async def test_host_git_env_switches_off_a_planted_fsmonitor_hooks_and_pager(tmp_path) -> None:
    # given a repository whose config and hooks were planted (host git never runs on a
    # workspace repository; this is the second line: the env it would run with)
    repo = tmp_path / "repo"
    markers = tmp_path / "markers"
    markers.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    subprocess.run(["git", "init", "-q", str(repo)], check=True,
                   env=gitops.git_env(None) | env)
    _plant_config(repo / ".git", markers)
    (repo / "a.txt").write_text("a\n")
    # when status, add, commit, log -p and a pull-free push run with the host's environment
    for argv in (["status"], ["add", "a.txt"],
                 ["-c", "user.name=h", "-c", "user.email=h@x", "commit", "-qm", "h"],
                 ["log", "-p"], ["diff", "HEAD"]):
        subprocess.run(["git", *argv], cwd=repo, env=gitops.git_env(None) | env, check=True,
                       capture_output=True)
    # then no fsmonitor, hook or pager ran
    assert sorted(p.name for p in markers.iterdir()) == []

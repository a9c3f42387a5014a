"""The allow-list and the per-program argument rules of run_command (no jail needed)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from app.tools.commands import check_command
from tests.fakes.tool_context import make_context


@pytest.fixture
def ctx(tmp_path: Path):
    return make_context(tmp_path / "ws")[0]


@pytest.mark.parametrize("command", [
    "python -m pytest -q", "pytest -x tests", "git status", "git log --oneline -5",
    "git config user.name bot", "find . -name '*.py'", "grep -rn TODO src", "make test",
    "sort -u notes.txt", "ls -la", "echo 'a; b | c'", "python3 -c 'print(1)'",
])
def test_allowed(ctx, command: str) -> None:
    assert check_command(shlex.split(command), ctx) is None


@pytest.mark.parametrize("command, reason", [
    ("curl http://x", "allow-list"), ("bash -c id", "allow-list"), ("./run.sh", "by name"),
    ("find . -execdir rm {} +", "-execdir"), ("find . -fprint /tmp/x", "-fprint"),
    ("git -ccore.pager=sh log", "git -c"), ("git --exec-path=/x status", "--exec-path"),
    ("git fetch --upload-pack=sh origin", "--upload-pack"),
    ("git push --receive-pack=sh origin", "--receive-pack"),
    ("git fetch -u sh origin", "-u"), ("git config core.hooksPath x", "core.hookspath"),
    ("git config --global user.name x", "repository's own"),
    ("git submodule foreach id", "submodule"),
    ("git rebase -x id main", "--exec"), ("git config alias.x '!sh'", "alias.x"),
    ("git clone -o ProxyCommand=sh x", "ProxyCommand"), ("make SHELL=/bin/bash", "SHELL"),
    ("make --eval=x", "--eval"), ("sort --compress-program=sh f", "compress-program"),
    ("python -m pip install x", "pip_install"), ("ls && id", "without a shell"),
    ("cat a > b", "without a shell"), ("", "empty"),
])
def test_refused(ctx, command: str, reason: str) -> None:
    why = check_command(shlex.split(command), ctx)
    assert why is not None and reason.lower() in why.lower()


def test_python_c_forbidden_by_agent_config(ctx) -> None:
    ctx.agent_config["allow_python_c"] = False
    assert "not allowed" in (check_command(["python", "-c", "1"], ctx) or "")
    assert check_command(["python", "script.py"], ctx) is None


def test_per_agent_allow_list(ctx) -> None:
    ctx.allowed_commands = ["ls"]
    assert check_command(["ls"], ctx) is None
    assert "allow-list" in (check_command(["python", "x.py"], ctx) or "")

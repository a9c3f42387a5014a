"""Host-side git: clone a task's repository and commit/push its work, safely.

Two rules make this safe against a hostile workspace and keep the token secret:

- The host never runs git on the agent's `.git`. Commits are built in a host-owned bare
  mirror (var_dir/git/task-<id>.git) with the workspace's src/ as the work tree and a private
  index, so hooks, filters or config an agent planted in src/.git are never read. Every host
  git also runs with system/global config ignored, hooks and fsmonitor off, no prompts.
- The token reaches git only as an `http.extraHeader` passed through GIT_CONFIG_COUNT/KEY/VALUE
  in the environment of that one subprocess: never in a URL, a config file, the workspace, an
  event or a log (git's output is redacted before it is raised or logged).
"""

from __future__ import annotations

import asyncio
import base64
import os
from dataclasses import dataclass
from pathlib import Path

from app.core.redact import redact

GIT_TIMEOUT_S = 300.0


class GitError(RuntimeError):
    """A git command failed; the message is already redacted."""


def _safe_env() -> dict[str, str]:
    try:  # the jail's definition wins when it exists, so there is one way to do this
        from app.sandbox.jail import host_git_env
    except ImportError:
        return _own_host_git_env()
    return dict(host_git_env())


def _own_host_git_env() -> dict[str, str]:
    """A minimal environment for host git: no inherited secrets, no user or system config."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": "/nonexistent",
        "LANG": "C.UTF-8",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
    }


def git_env(token: str | None, *, allow_file: bool = False) -> dict[str, str]:
    """The environment of one git command: hardened, plus the auth header if `token`."""
    env = _safe_env()
    config = [
        ("core.hooksPath", "/dev/null"),
        ("core.fsmonitor", "false"),
        ("protocol.ext.allow", "never"),
        ("credential.helper", ""),
    ]
    if allow_file:  # tests: the "GitHub" remote is a local bare repository
        config.append(("protocol.file.allow", "always"))
        env["GIT_ALLOW_PROTOCOL"] = "https:http:file"
    if token:
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        config.append(("http.extraHeader", f"Authorization: Basic {basic}"))
    # Appended after whatever the jail set, so the numbering continues from its count.
    start = int(env.get("GIT_CONFIG_COUNT", "0"))
    for i, (key, value) in enumerate(config, start=start):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    env["GIT_CONFIG_COUNT"] = str(start + len(config))
    return env


async def run_git(
    *args: str,
    cwd: Path | None = None,
    token: str | None = None,
    extra_env: dict[str, str] | None = None,
    check: bool = True,
    allow_file: bool = False,
) -> str:
    """Run one git command and return its stdout; GitError (redacted) on failure."""
    env = {**git_env(token, allow_file=allow_file), **(extra_env or {})}
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=str(cwd) if cwd else None,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), GIT_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise GitError(f"git {args[0]} timed out") from None
    if check and proc.returncode != 0:
        secrets = [token] if token else []
        raise GitError(
            redact(f"git {args[0]} failed: {err.decode(errors='replace')[-2000:]}", secrets)
        )
    return out.decode(errors="replace").strip()


async def clone(
    url: str, dest: Path, branch: str | None, token: str | None, *, allow_file: bool = False
) -> None:
    """Clone `url` into `dest` (an empty or missing directory) for the agent to work in."""
    args = ["clone", "--quiet", "--no-recurse-submodules"]
    if branch:
        args += ["--branch", branch]
    await run_git(*args, "--", url, str(dest), token=token, allow_file=allow_file)


@dataclass(frozen=True)
class Pushed:
    """What commit_and_push did: the branch tip and whether a new commit was made."""

    branch: str
    sha: str
    new_commit: bool


async def _remote_sha(mirror: Path, ref: str) -> str | None:
    out = await run_git("--git-dir", str(mirror), "rev-parse", "--verify", "-q", ref, check=False)
    return out or None


async def sync_mirror(mirror: Path, url: str, token: str | None, allow_file: bool) -> None:
    """A host-owned bare copy of the remote, its branches under refs/remotes/origin/."""
    if not (mirror / "HEAD").is_file():
        mirror.parent.mkdir(parents=True, exist_ok=True)
        await run_git("init", "--quiet", "--bare", str(mirror))
        await run_git("--git-dir", str(mirror), "remote", "add", "origin", url)
    await run_git(
        "--git-dir",
        str(mirror),
        "fetch",
        "--quiet",
        "--prune",
        "origin",
        "+refs/heads/*:refs/remotes/origin/*",
        token=token,
        allow_file=allow_file,
    )


async def commit_and_push(
    *,
    mirror: Path,
    url: str,
    work_tree: Path,
    branch: str,
    base: str,
    message: str,
    author: tuple[str, str],
    token: str | None,
    allow_file: bool = False,
) -> Pushed:
    """Commit the work tree as it is onto `branch` (or `base` for a new branch) and push it."""
    await sync_mirror(mirror, url, token, allow_file)
    remote_tip = await _remote_sha(mirror, f"refs/remotes/origin/{branch}")
    parent = remote_tip or await _remote_sha(mirror, f"refs/remotes/origin/{base}")
    if parent is None:
        raise GitError(f"base branch {base!r} not found on the remote")
    gd = ["--git-dir", str(mirror), "--work-tree", str(work_tree)]
    index = {"GIT_INDEX_FILE": str(mirror / f"index-{branch.replace('/', '-')}")}
    await run_git(*gd, "read-tree", parent, cwd=work_tree, extra_env=index)
    await run_git(*gd, "add", "--all", ".", cwd=work_tree, extra_env=index)
    tree = await run_git(*gd, "write-tree", cwd=work_tree, extra_env=index)
    parent_tree = await run_git("--git-dir", str(mirror), "rev-parse", f"{parent}^{{tree}}")
    if tree == parent_tree and remote_tip is None:
        raise GitError("no changes to commit: src/ is the same as the base branch")
    sha, new = parent, False
    if tree != parent_tree:
        who = {
            "GIT_AUTHOR_NAME": author[0],
            "GIT_AUTHOR_EMAIL": author[1],
            "GIT_COMMITTER_NAME": author[0],
            "GIT_COMMITTER_EMAIL": author[1],
        }
        sha = await run_git(
            "--git-dir",
            str(mirror),
            "commit-tree",
            tree,
            "-p",
            parent,
            "-m",
            message,
            extra_env=who,
        )
        new = True
    if sha != remote_tip:
        await run_git(
            "--git-dir",
            str(mirror),
            "push",
            "--quiet",
            "origin",
            f"{sha}:refs/heads/{branch}",
            token=token,
            allow_file=allow_file,
        )
        await run_git("--git-dir", str(mirror), "update-ref", f"refs/remotes/origin/{branch}", sha)
    return Pushed(branch=branch, sha=sha, new_commit=new)

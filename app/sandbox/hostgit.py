"""Host-side git on a workspace repository without running anything the agent planted.

A jailed command can write the workspace's .git/hooks and .git/config (fsmonitor, pager,
sshCommand, filter drivers, include.path, aliases…). Host git therefore runs with
`host_git_env()` (command-line config outranks the repo's; no system/global config) and, before
any host git command, `sanitize_git_repo()` rewrites .git/config to a short list of inert keys,
because includes in the repo config cannot be switched off by the environment.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

_SAFE_KEYS = re.compile(
    r"^(core\.(repositoryformatversion|filemode|bare|logallrefupdates|ignorecase|"
    r"precomposeunicode|symlinks)|extensions\.objectformat|user\.(name|email)|"
    r"branch\.[^\n]+\.(remote|merge)|remote\.[^\n]+\.(url|fetch))$",
    re.IGNORECASE,
)
_OVERRIDES = [
    ("core.hooksPath", "/dev/null"), ("core.fsmonitor", "false"), ("core.sshCommand", "ssh"),
    ("core.pager", "cat"), ("core.editor", "true"), ("core.askPass", ""),
    ("credential.helper", ""), ("diff.external", ""), ("safe.directory", "*"),
    ("protocol.ext.allow", "never"), ("protocol.file.allow", "never"),
    ("uploadpack.packObjectsHook", ""), ("core.gitProxy", ""),
]


def host_git_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for host-side git on a workspace repo: no hooks, no repo-planted helpers.

    GIT_CONFIG_COUNT entries act like `git -c`, which outranks the repository's config. The
    workspace belongs to the sandbox uid, hence safe.directory.
    """
    env = {k: v for k, v in (base or {}).items() if not k.startswith("GIT_")}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update({"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
                "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "GIT_EDITOR": "true",
                "GIT_ASKPASS": "/bin/false", "GIT_NO_REPLACE_OBJECTS": "1",
                "GIT_PROTOCOL_FROM_USER": "0", "GIT_ALLOW_PROTOCOL": "https:http"})
    env["GIT_CONFIG_COUNT"] = str(len(_OVERRIDES))
    for i, (key, value) in enumerate(_OVERRIDES):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


def sanitize_git_repo(repo: Path) -> None:
    """Make `repo`/.git safe for host git: a real directory inside `repo`, an inert config."""
    git_dir = repo / ".git"
    if git_dir.is_symlink() or not git_dir.is_dir():
        raise ValueError(f"{git_dir} is not a plain directory")
    real = os.path.realpath(git_dir)
    if not real.startswith(os.path.realpath(repo) + os.sep):
        raise ValueError(f"{git_dir} leaves the repository")
    config = git_dir / "config"
    entries: list[tuple[str, str]] = []
    if config.is_file() and not config.is_symlink():
        out = subprocess.run(
            ["git", "config", "--file", str(config), "--no-includes", "--list", "-z"],
            capture_output=True, env=host_git_env(), check=False, timeout=30,
        ).stdout.decode("utf-8", errors="replace")
        for item in filter(None, out.split("\0")):
            key, _, value = item.partition("\n")
            if _SAFE_KEYS.match(key):
                entries.append((key, value))
    _write_config(git_dir, entries)


def _write_config(git_dir: Path, entries: list[tuple[str, str]]) -> None:
    lines: list[str] = []
    for key, value in entries:
        section, _, name = key.rpartition(".")
        head, _, sub = section.partition(".")
        quoted = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        sub_q = sub.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'[{head} "{sub_q}"]' if sub else f"[{head}]")
        lines.append(f'\t{name} = "{quoted}"')
    fd, tmp = tempfile.mkstemp(dir=git_dir, prefix=".config-")
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(tmp, git_dir / "config")  # replaces a planted symlink, never its target

"""What a jailed command's environment and arguments may contain.

The environment is built from scratch: nothing of the host's (API keys, tokens, proxies) is
inherited, and names that make programs load or run code of someone else's choosing
(LD_PRELOAD, BASH_ENV, GIT_*, PAGER, PYTHON*…) are dropped even when a caller passes them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from app.sandbox.workspace import PathRefused

_BLOCKED_ENV = re.compile(
    r"^(LD_.*|DYLD_.*|BASH_ENV|ENV|SHELLOPTS|BASHOPTS|PS4|PROMPT_COMMAND|GIT_.*|PAGER|"
    r"MANPAGER|EDITOR|VISUAL|PYTHON.*|PERL5?LIB|PERL5OPT|RUBYOPT|NODE_OPTIONS|.*_PROXY|"
    r"SSL_CERT_.*|CURL_.*|HOME|PATH|TMPDIR|IFS)$",
    re.IGNORECASE,
)
_VALID_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# Read-only system locations the fallback lets arguments name (the jail shows only these too).
_FALLBACK_READABLE = ("/usr/", "/bin/", "/lib/", "/lib64/", "/dev/null", "/dev/zero")


def jail_env(
    workspace: str, venv: str | None, extra: dict[str, str] | None, *, home: str = "/tmp"  # noqa: S108 - the jail's private tmpfs
) -> dict[str, str]:
    """The whole environment of a jailed command: fixed values plus vetted `extra`; `venv`
    is the active venv's folder in the workspace (first on PATH), None for none."""
    path = "/usr/local/bin:/usr/bin:/bin"
    env = {
        "PATH": f"{workspace}/{venv}/bin:{path}" if venv else path,
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "USER": "sandbox",
        "TERM": "dumb",
    }
    if venv:
        env["VIRTUAL_ENV"] = f"{workspace}/{venv}"
    for key, value in (extra or {}).items():
        if _VALID_NAME.match(key) and not _BLOCKED_ENV.match(key) and "\x00" not in value:
            env[key] = value
    env.update(JAIL_GIT_ENV)
    return env


def env_name_allowed(name: str) -> bool:
    """Whether `jail_env` keeps an extra variable of this name (it drops the others)."""
    return bool(_VALID_NAME.match(name)) and not _BLOCKED_ENV.match(name)


# git inside the jail: settings a workspace's .git/config could use to run a program are
# overridden (command-line config outranks the repository's), so an allowed `git status` never
# runs a planted fsmonitor, hook, pager, editor or helper; no system or global config is read.
_JAIL_GIT_OVERRIDES = [
    ("core.hooksPath", "/dev/null"), ("core.fsmonitor", "false"), ("core.pager", "cat"),
    ("core.editor", "true"), ("sequence.editor", "true"), ("core.sshCommand", "false"),
    ("core.askPass", ""), ("core.gitProxy", ""), ("credential.helper", ""),
    ("diff.external", ""), ("gpg.program", "false"), ("commit.gpgSign", "false"),
    ("tag.gpgSign", "false"), ("protocol.ext.allow", "never"),
    ("uploadpack.packObjectsHook", ""),
]
JAIL_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_PAGER": "cat",
    "GIT_EDITOR": "true", "GIT_SEQUENCE_EDITOR": "true", "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "false", "GIT_EXTERNAL_DIFF": "",
    "GIT_CONFIG_COUNT": str(len(_JAIL_GIT_OVERRIDES)),
    **{f"GIT_CONFIG_KEY_{i}": key for i, (key, _v) in enumerate(_JAIL_GIT_OVERRIDES)},
    **{f"GIT_CONFIG_VALUE_{i}": value for i, (_k, value) in enumerate(_JAIL_GIT_OVERRIDES)},
}


def redact(text: str, secrets: list[str]) -> str:
    """`text` with every secret value replaced by a marker."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "[REDACTED]")
    return text


def fallback_argv(argv: list[str], root: Path, jail_root: str, cwd: str) -> list[str]:
    """Map /workspace paths onto the real root and refuse paths leaving it (fallback only).

    Without namespaces the host's files are visible, so each argument that names a path
    (also after '=' as in --file=/x) must stay in the workspace or in read-only system dirs.
    Code passed inline (python -c) cannot be checked; that is why the fallback is degraded.
    """
    real_root = os.path.realpath(root)
    out = argv[:1]  # the program is found on the jail's PATH, not checked as a path
    for arg in argv[1:]:
        if arg == jail_root or arg.startswith(jail_root + "/"):
            arg = real_root + arg[len(jail_root):]
        for part in [arg, *arg.split("=")[1:]]:
            _check_path_arg(part, real_root, cwd)
        out.append(arg)
    return out


def _check_path_arg(part: str, real_root: str, cwd: str) -> None:
    if part.startswith("~"):
        raise PathRefused(f"home-relative paths are not allowed: {part!r}")
    looks_like_path = part.startswith("/") or ".." in Path(part).parts
    if not looks_like_path:
        return
    if part.startswith(_FALLBACK_READABLE) and ".." not in Path(part).parts:
        return
    target = os.path.realpath(os.path.join(cwd, part))
    if target != real_root and not target.startswith(real_root + "/"):
        raise PathRefused(f"path leaves the workspace: {part!r}")

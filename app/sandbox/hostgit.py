"""The environment of every host-side git command.

A jailed command can write the workspace's .git/hooks and .git/config (fsmonitor, pager,
sshCommand, filter drivers, include.path, aliases…), and no environment can switch off a
repository config's includes. So the host never runs git on a workspace's repository at all:
app.integrations.gitops copies src/ (without .git) into a host-owned folder through
app.sandbox.fs and commits from a host-owned bare mirror. Every host git also runs with
`host_git_env()`: no system or global config, hooks and fsmonitor off, no pager, editor,
prompts or credential helpers, only http(s) remotes (command-line config outranks a repo's).
"""

from __future__ import annotations

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

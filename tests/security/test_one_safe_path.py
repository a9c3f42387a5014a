"""Nothing in app/ but app/sandbox/fs.py does raw file I/O on a workspace path.

The heuristic: every line of app/ that calls a raw file primitive (open, os.open, Path.read_*/
write_*, shutil copy/move/rmtree, os.walk/scandir/listdir, Path.iterdir/glob/rglob/is_file/
is_dir/exists/mkdir/unlink/stat, os.path.isfile/isdir/exists/islink/realpath, FileResponse)
must be either in a module that never touches a workspace (MODULES, with the reason) or be one
of the explicitly allowed lines below (LINES, with the reason: the host's own files under
var_dir, the workspace root path the host made, templates). A new raw call on a workspace path
fails this test: route it through app.sandbox.fs instead. The test also fails on a stale
allow-list entry, so the list stays what the code does.
"""

from __future__ import annotations

import re
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"
RAW = re.compile(
    r"(?<![\w.])open\(|\bos\.open\(|(?<!\bfs)\.(read_text|read_bytes|write_text|write_bytes)\("
    r"|\bshutil\.(copy\w*|move|rmtree)\(|\bos\.(walk|scandir|listdir|replace|rename|remove|unlink"
    r"|mkdir|makedirs|chown|lstat|stat)\(|\.(iterdir|glob|rglob|is_file|is_dir|exists|is_symlink"
    r"|mkdir|touch|unlink|rmdir|stat|lstat)\(|\bos\.path\.(isfile|isdir|exists|islink"
    r"|getsize|realpath)\(|\bFileResponse\("
)

MODULES = {
    "sandbox/fs.py": "THE one safe path",
    "sandbox/selftest.py": "runs inside the jail, or on a host temp dir it made itself",
    "sandbox/shell_server.py": "runs only inside the jail (the task's persistent shell)",
    "sandbox/mounts.py": "the host's own bind-mount staging folder",
    "sandbox/envpolicy.py": "fallback mode: name checks (realpath) of arguments, no I/O",
    "core/config.py": "settings",
    "kinds/playbook/schema.py": "shipped playbook templates",
    "kinds/scenario/store.py": "shipped scenario templates",
    "kinds/scenario/wordpiece.py": "the installed embedding model package's vocab.txt",
    "api/templates.py": "shipped templates",
    "ops/seed.py": "shipped agent templates",
    "kinds/agent.py": "shipped agent templates",
    "api/docs.py": "the static files of the fastapi-offline package",
    "sandbox/cgroups.py": "/sys/fs/cgroup, never a workspace",
    "sandbox/reaper.py": "/proc, never a workspace",
    "sandbox/uids.py": "its own lock folder; the workspace root the host made (lstat/lchown)",
    "sandbox/ownership.py": "hand-over walk: directory fds (os.fwalk), lchown without following,"
    " never a file with several links",
    "tools/undo.py": "the host's own undo folder beside (not inside) the workspace",
    "ops/migrate.py": "the database file's folder",
    "sandbox/wheels.py": "the host's own wheel cache and venv layers under var/ (the one file "
                         "it puts in a workspace goes through fs)",
    "ops/cli/remote.py": "the CLI user's own download folder on their machine (names cleaned)",
    "ops/cli/service.py": "the service's own log folder under var/",
    "tasks/broker.py": "the embedded broker's own database folder under var/",
}

LINES = {
    "api/artifacts.py": [  # var_dir/reports and var_dir/uploads: the host's own folders
        'return FileResponse(path, media_type="application/pdf", filename=f"task-{task_id}.pdf")',
        "staging.mkdir(parents=True, exist_ok=True)",
    ],
    "integrations/email.py": [  # var_dir/reports and var_dir/outbox: the host's own files
        "size = path.stat().st_size if path.is_file() else -1",
        "_attach_bytes(msg, path.read_bytes(), name)",
        "if report is None or not report.is_file():",
        "size = report.stat().st_size",
        "path.parent.mkdir(parents=True, exist_ok=True)",
        "tmp.write_bytes(msg.as_bytes())",
        "os.replace(tmp, path)",
    ],
    "integrations/gitops.py": [  # var_dir/git: the host's mirror and staging folders
        "if dest.exists():", "shutil.rmtree(dest)", "dest.mkdir(parents=True)",
        'if not (mirror / "HEAD").is_file():', "mirror.parent.mkdir(parents=True, exist_ok=True)",
    ],
    "integrations/report.py": [
        "return root if root and root.is_dir() else None",  # the root path the host made
        "out.parent.mkdir(parents=True, exist_ok=True)",  # var_dir/reports
        "if path.is_file():",  # var_dir/reports/task-N.pdf
    ],
    "run/runner.py": [".exists())"],  # SQL EXISTS
    "tasks/lifecycle.py": [".exists()"],  # SQL EXISTS
    "sandbox/jail.py": [
        "return os.path.realpath(exe), os.path.realpath(sys.base_prefix)",  # host python
        "if os.path.islink(host):", "elif os.path.isdir(host):",  # /bin, /lib of the host
        "os.chown(home, *ids)", "shutil.rmtree(home, ignore_errors=True)",  # a temp HOME
        "return str(folder) if folder.is_dir() else None",  # var/venv-base, the host's
    ],
    "sandbox/shell.py": [  # the server's source, shipped beside it in the package
        'SERVER_SOURCE = (Path(__file__).parent / "shell_server.py").read_text()',
    ],
    "tools/packages.py": [  # the host's uv cache; a fresh root-only staging prefix it names
        "cache.mkdir(mode=0o700, parents=True, exist_ok=True)",
        "os.mkdir(stage, 0o700)", "os.chown(stage, *ids, follow_symlinks=False)",
    ],
    "sandbox/workspace.py": [
        "self.root.mkdir(parents=True, exist_ok=True)",  # the root path the host made
        # resolve(): a name check for the jail's cwd (realpath containment), no file content
        "real = Path(os.path.realpath(candidate))", "root = Path(os.path.realpath(self.root))",
        "if must_exist and not real.exists():",
        "return str(Path(os.path.realpath(path)).relative_to(os.path.realpath(self.root)))",
        # prune_workspaces: the folder of workspaces, never entering one (rmtree is fd-based)
        "if not base.exists():", "for agent_dir in base.iterdir():",
        "if not agent_dir.is_dir() or agent_dir.is_symlink():",
        "for task_dir in agent_dir.iterdir():",
        "stale = task_dir.is_dir() and not task_dir.is_symlink()",
        "if stale and task_dir.stat().st_mtime < cutoff:",
        "shutil.rmtree(task_dir, ignore_errors=True)",
    ],
    "tools/search.py": ["ctx.settings.var_dir.mkdir(parents=True, exist_ok=True)"],  # cache
}


def _raw_lines() -> list[tuple[str, str]]:
    found = []
    for path in sorted(APP.rglob("*.py")):
        rel = path.relative_to(APP).as_posix()
        for line in path.read_text(encoding="utf-8").splitlines():
            code = line.split("  #", 1)[0].strip()
            if code and not code.startswith("#") and RAW.search(code):
                found.append((rel, code))
    return found


def test_no_raw_file_io_on_workspace_paths_outside_fs() -> None:
    offending = [f"app/{rel}: {code}" for rel, code in _raw_lines()
                 if rel not in MODULES and not any(a in code for a in LINES.get(rel, []))]
    assert offending == [], "raw file I/O outside app/sandbox/fs.py:\n" + "\n".join(offending)


def test_allow_list_has_no_stale_entries() -> None:
    present = _raw_lines()
    stale = [f"{rel}: {a}" for rel, allowed in LINES.items() for a in allowed
             if not any(r == rel and a in code for r, code in present)]
    stale += [m for m in MODULES if not (APP / m).exists()]
    assert stale == []


def test_the_heuristic_catches_raw_calls() -> None:
    for code in ("open(p)", "p.read_text()", "os.walk(root)", "shutil.copyfile(a, b)",
                 "x.rglob('*')", "FileResponse(target)", "p.is_file()", "os.scandir(d)"):
        assert RAW.search(code), code
    for code in ("fs.read_text(root, rel, 10)", "fs.write_bytes(root, rel, b'')",
                 "fs.open_read(root, rel)", "os.fdopen(fd)"):
        assert not RAW.search(code), code

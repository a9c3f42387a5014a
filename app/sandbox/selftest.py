"""Start-up self-test: proves, before a worker takes tasks, that the jail holds.

One jailed Python run tries what an attacker would: reach a socket listening on the host's
loopback, read a host file outside the workspace and /etc/shadow, list /root, find itself
root or holding capabilities, find host environment variables. The result is cached per
process and shown by /health:

    {"mode": "bwrap" | "none", "ok": bool, "checks": {name: bool, ...}, "error": str | None}
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import tempfile
from pathlib import Path
from typing import Any

from app.core.config import Settings
from app.sandbox.jail import host_python, run_jailed_sync, sandbox_mode
from app.sandbox.workspace import Workspace

log = logging.getLogger(__name__)
_cache: dict[tuple[str, int], dict[str, Any]] = {}

_PROBE = r"""
import json, os, socket, sys
out = {}
s = socket.socket()
s.settimeout(2)
try:
    s.connect(("127.0.0.1", int(os.environ["PROBE_PORT"])))
    out["no_network"] = False
except OSError:
    out["no_network"] = True
def unreadable(p):
    try:
        open(p, "rb").read(1)
        return False
    except OSError:
        return True
out["no_host_files"] = unreadable(os.environ["PROBE_SENTINEL"]) and unreadable("/etc/shadow")
try:
    out["no_root_home"] = set(os.listdir("/root")) <= {os.environ["PROBE_ROOT_ALLOWED"]}
except OSError:
    out["no_root_home"] = True
out["unprivileged"] = os.getuid() != 0 and os.geteuid() != 0
caps = [l for l in open("/proc/self/status") if l.startswith("CapEff")]
out["no_capabilities"] = bool(caps) and int(caps[0].split()[1], 16) == 0
out["env_scrubbed"] = os.environ.get("PROBE_CANARY_HOST") is None
out["workspace_writable"] = open("probe.txt", "w").write("ok") == 2
print("PROBE" + json.dumps(out))
"""


def run_selftest(settings: Settings) -> dict[str, Any]:
    """Check the jail once per process; RuntimeError when TASKBENCH_SANDBOX=bwrap can't jail."""
    key = (settings.sandbox, settings.sandbox_uid)
    if key not in _cache:
        _cache[key] = _selftest(settings)
        result = _cache[key]
        if not result["ok"] or result["mode"] != "bwrap":
            log.warning("SANDBOX SELF-TEST: mode=%s ok=%s checks=%s error=%s", result["mode"],
                        result["ok"], result["checks"], result["error"])
    return _cache[key]


def _selftest(settings: Settings) -> dict[str, Any]:
    mode = sandbox_mode(settings)  # raises when bwrap is required and broken
    canary = "tb-canary-" + secrets.token_hex(8)
    os.environ["PROBE_CANARY_HOST"] = canary
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        with tempfile.TemporaryDirectory(prefix="taskbench-selftest-") as tmp:
            return _probe(settings, mode, Path(tmp), listener.getsockname()[1], canary)
    except Exception as exc:  # noqa: BLE001 - the self-test reports, the caller decides
        return {"mode": mode, "ok": False, "checks": {}, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        listener.close()
        os.environ.pop("PROBE_CANARY_HOST", None)


def _world_reachable(path: str) -> bool:
    """Whether any uid may traverse to and execute `path` (every parent o+x)."""
    parts = Path(path).parents
    return all(os.stat(p).st_mode & 0o001 for p in parts) and bool(os.stat(path).st_mode & 1)


def _probe(settings: Settings, mode: str, tmp: Path, port: int, canary: str) -> dict[str, Any]:
    sentinel = tmp / "host-secret.txt"
    sentinel.write_text(canary)
    os.chmod(tmp, 0o755)  # noqa: S103 - readable by anyone on the host: only the jail may hide it
    ws = Workspace(tmp / "ws")
    ws.root.mkdir()
    exe, prefix = host_python()
    if mode != "bwrap" and not _world_reachable(exe):
        exe = "/usr/bin/python3"  # the fallback uid cannot enter /root; the system one will do
    root_allowed = prefix.split("/")[2] if prefix.startswith("/root/") else ""
    env = {"PROBE_PORT": str(port), "PROBE_SENTINEL": str(sentinel),
           "PROBE_ROOT_ALLOWED": root_allowed}
    res = run_jailed_sync([exe, "-I", "-c", _PROBE], workspace=ws, settings=settings,
                          timeout=30, env=env)
    line = next((x for x in res.output.splitlines() if x.startswith("PROBE")), "")
    if not line:
        return {"mode": mode, "ok": False, "checks": {},
                "error": f"probe failed (exit {res.exit_code}): {res.output[-500:]}"}
    checks = json.loads(line[5:])
    checks["env_scrubbed"] = checks["env_scrubbed"] and canary not in res.output
    ok = all(checks.values()) and mode == "bwrap"
    error = None if ok else ("jail not in use: restricted subprocess only" if mode != "bwrap"
                             else "failed: " + ", ".join(k for k, v in checks.items() if not v))
    return {"mode": mode, "ok": ok, "checks": checks, "error": error}

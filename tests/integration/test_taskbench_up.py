"""`taskbench up`: API + worker on embedded defaults; SIGTERM stops both, no orphans."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.factories import base_env
from tests.integration.workers import ROOT

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_up_serves_a_task_and_stops_cleanly(tmp_path: Path, llm) -> None:
    # given `taskbench up` on embedded defaults (SQLite + the embedded broker)
    port = _free_port()
    env = {**os.environ, **base_env(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'tb.db'}",
                                     llm.url)}
    env.pop("TASKBENCH_DATABASE_URL")  # the embedded default: var/taskbench.db
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115
    up = subprocess.Popen([sys.executable, "-m", "app.ops.cli", "up", "--port", str(port)],
                          cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                          start_new_session=True)
    api = f"http://127.0.0.1:{port}"
    key = env["TASKBENCH_ADMIN_API_KEY"]
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"{api}/health", timeout=2).json()
                if health["workers"]:
                    break
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            time.sleep(0.5)
        else:
            log_text = (tmp_path / "up.log").read_text()
            pytest.fail(f"taskbench up did not become healthy:\n{log_text}")
        # when a task is submitted with the CLI and followed to the end
        done = subprocess.run(
            [sys.executable, "-m", "app.ops.cli", "submit", "hello", "--complexity", "1",
             "--api", api, "--key", key], cwd=ROOT, env=env, capture_output=True, text=True,
            timeout=120)
        # then it completed, and the database is the embedded default under var/
        assert done.returncode == 0, done.stdout + done.stderr
        assert "completed" in done.stdout
        assert (tmp_path / "var" / "taskbench.db").exists()
        # and `tasks list|show` read it back, a missing task is the API's message in one line
        def cli(*argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "app.ops.cli", *argv, "--api", api,
                                   "--key", key], cwd=ROOT, env=env, capture_output=True,
                                  text=True, timeout=60)
        listed = cli("tasks", "list")
        assert listed.returncode == 0 and "completed" in listed.stdout and "hello" in listed.stdout
        task_id = listed.stdout.split()[0]
        shown = cli("tasks", "show", task_id)
        assert shown.returncode == 0 and "status      completed" in shown.stdout
        missing = cli("tasks", "show", "999999")
        assert missing.returncode == 1 and "refused (404)" in missing.stderr
        assert "Traceback" not in missing.stderr and "{" not in missing.stderr
    finally:
        # and SIGTERM stops the API and the worker, leaving no process behind
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=60)
        log.close()
    deadline = time.monotonic() + 20
    while _group_alive(up.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _group_alive(up.pid), "processes of `taskbench up` outlived it"

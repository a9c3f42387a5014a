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
from aiosmtpd.controller import Controller

from tests.factories import base_env
from tests.factories.loop import Router
from tests.fakes.llm_server import error, finish, tool_call
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
    # given `taskbench up` on embedded defaults (SQLite + the embedded broker) and a model that
    # writes a file in one task, asks a question in another and is refused in a third
    llm.responder = (
        Router()
        .script("notes", tool_call("write_file", path="output/notes.md", content="# Notes\n"))
        .script("colour", tool_call("ask_user", question="Which colour?"), finish("blue it is"))
        .script("doomed", error(401, "invalid key at the provider"))
        .script("upload", tool_call("read_file", path="input/data.txt"), finish("read it"))
    )
    port = _free_port()
    inbox: list[str] = []

    class Inbox:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            inbox.append(envelope.content.decode(errors="replace"))
            return "250 OK"

    smtp_port = _free_port()
    smtp = Controller(Inbox(), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    env = {**os.environ, **base_env(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'tb.db'}",
                                     llm.url),
           "TASKBENCH_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}?starttls=0"}
    env.pop("TASKBENCH_DATABASE_URL")  # the embedded default: var/taskbench.db
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115
    up = subprocess.Popen([sys.executable, "-m", "app.ops.cli", "up", "--port", str(port)],
                          cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                          start_new_session=True)
    api = f"http://127.0.0.1:{port}"
    key = env["TASKBENCH_ADMIN_API_KEY"]

    def cli(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "app.ops.cli", *argv, "--api", api,
                               "--key", key], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=timeout)

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
        # then `up` said where to go and what it runs on, in a few clean lines; the parts'
        # banners went to the log file instead
        said = (tmp_path / "up.log").read_text()
        assert f"dashboard {api}/" in said and f"docs      {api}/docs" in said
        assert "database          sqlite+aiosqlite:///" in said
        assert "model provider    configured" in said
        assert "sandbox" in said and "logs" in said
        assert "Running upgrade" not in said and "Uvicorn running" not in said
        assert "celery@" not in said
        logged = (tmp_path / "var" / "log" / "taskbench.log").read_text()
        assert "Uvicorn running" in logged

        # when a task is submitted with the CLI and followed to the end
        done = cli("submit", "notes", "--complexity", "1")
        # then it completed (exit 0) with each tool call on a line, the file and the report link
        assert done.returncode == 0, done.stdout + done.stderr
        out = done.stdout
        assert "✓ write_file" in out and "completed" in out, out
        assert "usage: " in out and "model calls" in out  # tokens and cost
        assert "file notes.md" in out
        task_id = out.split()[1]
        assert f"{api}/api/v1/tasks/{task_id}/report.pdf" in out
        assert (tmp_path / "var" / "taskbench.db").exists()

        # and `tasks list|show|logs|artifacts|download` read it back
        listed = cli("tasks", "list")
        assert listed.returncode == 0 and "completed" in listed.stdout and "notes" in listed.stdout
        shown = cli("tasks", "show", task_id)
        assert shown.returncode == 0 and "status      completed" in shown.stdout
        logs = cli("tasks", "logs", task_id)
        assert logs.returncode == 0 and "✓ write_file" in logs.stdout
        artifacts = cli("tasks", "artifacts", task_id)
        assert "notes.md" in artifacts.stdout
        saved = cli("tasks", "download", task_id, "--out", str(tmp_path / "got"))
        assert saved.returncode == 0, saved.stderr
        assert (tmp_path / "got" / "notes.md").read_text() == "# Notes\n"
        assert (tmp_path / "got" / "report.pdf").read_bytes().startswith(b"%PDF")
        # and a missing task is the API's message in one line
        missing = cli("tasks", "show", "999999")
        assert missing.returncode == 1 and "refused (404)" in missing.stderr
        assert "Traceback" not in missing.stderr and "{" not in missing.stderr

        # when a task asks a question, it arrives by email, and `taskbench answer` resumes it
        asked = cli("submit", "colour", "--complexity", "1", "--detach",
                    "--email", "owner@example.com")
        colour_id = asked.stdout.split()[1]
        deadline = time.monotonic() + 60
        while not any("Which colour?" in m for m in inbox):
            assert time.monotonic() < deadline, f"no question by email: {inbox}"
            time.sleep(0.3)
        question = next(m for m in inbox if "Which colour?" in m)
        assert f'taskbench answer {colour_id} "your answer"' in question
        assert httpx.get(f"{api}/api/v1/tasks/{colour_id}", headers={
            "Authorization": f"Bearer {key}"}).json()["status"] == "waiting_input"
        answered = cli("answer", colour_id, "Blue")
        assert answered.returncode == 0, answered.stderr
        followed = cli("tasks", "logs", colour_id, "--follow")
        assert followed.returncode == 0, followed.stdout + followed.stderr
        assert "Which colour?" in followed.stdout and "completed" in followed.stdout

        # when a task is submitted with an uploaded file and two addresses to tell
        (tmp_path / "data.txt").write_text("hello-from-upload\n")
        uploaded = cli("submit", "upload", "--complexity", "1", "--file",
                       str(tmp_path / "data.txt"), "--email", "a@example.com",
                       "--email", "b@example.com")
        # then the agent read the uploaded file, and the task holds both addresses
        assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
        assert "✓ read_file" in uploaded.stdout and "hello-from-upload" in uploaded.stdout
        upload_id = uploaded.stdout.split()[1]
        notify = httpx.get(f"{api}/api/v1/tasks/{upload_id}", headers={
            "Authorization": f"Bearer {key}"}).json()["notify"]
        assert notify["email"] == ["a@example.com", "b@example.com"]

        # when the provider refuses, the followed task fails: exit 1 with the reason
        failed = cli("submit", "doomed", "--complexity", "1")
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert "failed" in failed.stdout and "Traceback" not in failed.stderr
    finally:
        smtp.stop()
        # and SIGTERM stops the API and the worker, leaving no process behind
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=60)
        log.close()
    deadline = time.monotonic() + 20
    while _group_alive(up.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _group_alive(up.pid), "processes of `taskbench up` outlived it"

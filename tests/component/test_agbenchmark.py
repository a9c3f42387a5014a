"""The published Agent Protocol benchmark harness (agbenchmark 0.0.10) against /ap/v1.

agbenchmark pins pydantic 1 and an old openai, so it lives in its own venv (made once from
tests/locks/agbenchmark.txt) and runs as a subprocess against a live server. It sends no
Authorization header, so it comes in through the opt-in key-in-URL prefix. The scripted model
plays the agent through the real loop and tools: it reads the uploaded file with `read_file` and
writes what the tool returned with `write_file`; agbenchmark downloads the artifacts and checks
them with its own rules (TestWriteFile: a .txt containing "Washington"; TestReadFile: output.txt
containing the uploaded file's "Hello World!").
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_enqueued
from tests.factories.loop import is_inspector, verdict
from tests.factories.venvs import locked_venv
from tests.fakes.llm_server import Response, finish, tool_call
from tests.live_server import live_server

ADMIN_KEY = "tb_admin_" + "a" * 32


@pytest.fixture(scope="session")
def agbenchmark() -> str:
    """The agbenchmark command of a venv holding it as tests/locks/agbenchmark.txt pins it."""
    return str(locked_venv("agbenchmark") / "bin" / "agbenchmark")


def play_the_agent(request: dict[str, Any]) -> Response:
    """What a capable model would do for the two interface challenges, step by step."""
    if is_inspector(request):
        return verdict(0.95)
    messages = request["messages"]
    task = messages[0]["content"]
    called = [c["function"]["name"] for m in messages for c in m.get("tool_calls") or []]
    if "Washington" in task and "write_file" not in called:
        return tool_call("write_file", path="output/washington.txt", content="Washington")
    if "file_to_read.txt" in task:
        if "read_file" not in called:
            return tool_call("read_file", path="input/file_to_read.txt")
        if "write_file" not in called:
            read = next(m["content"] for m in messages if m["role"] == "tool")
            return tool_call("write_file", path="output/output.txt", content=read)
    return finish("done")


async def _bench(command: str, cwd: Path, tests: list[str], enqueued: Any) -> tuple[int, str]:
    """Run the challenges while this process plays the worker; (exit code, output)."""
    proc = await asyncio.create_subprocess_exec(
        command, "start", *(f"--test={t}" for t in tests), cwd=cwd,
        env={**os.environ, "PYTHONPATH": ""},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    communicate = asyncio.ensure_future(proc.communicate())
    while not communicate.done():
        await run_enqueued(enqueued)
        await asyncio.sleep(0.1)
    out, _ = await asyncio.wait_for(communicate, 1)
    return proc.returncode or 0, out.decode(errors="replace")


def _report(cwd: Path) -> dict[str, Any]:
    reports = sorted((cwd / "agbenchmark_config" / "reports").glob("*/report.json"))
    return json.loads(reports[-1].read_text())


async def test_agbenchmark_interface_challenges_pass(
    agbenchmark, db, enqueued, llm, tmp_path, monkeypatch
):
    # given a live server letting key-in-URL clients in, and a model playing the agent
    monkeypatch.setenv("TASKBENCH_AP_KEY_IN_URL", "true")
    from app.core.config import reset_settings

    reset_settings()
    llm.responder = play_the_agent
    challenges = ["TestWriteFile", "TestReadFile"]
    with live_server() as url:
        config = tmp_path / "agbenchmark_config"
        config.mkdir()
        (config / "config.json").write_text(json.dumps({"host": f"{url}/ap/k/{ADMIN_KEY}/v1"}))
        # when agbenchmark runs the two interface challenges
        code, out = await _bench(agbenchmark, tmp_path, challenges, enqueued)
    # then both passed by agbenchmark's own verdict
    assert code == 0, out[-4000:]
    tests = _report(tmp_path)["tests"]
    assert {name: tests[name]["metrics"]["success"] for name in challenges} == {
        "TestWriteFile": True, "TestReadFile": True}, json.dumps(tests, indent=1)[-3000:]

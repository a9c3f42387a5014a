"""A venv that is useful on first use (issue 14): the agent's default packages come from the
local wheel cache, which is filled once on the host and is never writable from a task."""

from __future__ import annotations

import shutil

import pytest

from app.core.config import reset_settings
from tests.factories.loop import Router, events_of
from tests.factories.worker import submit_and_run
from tests.fakes.llm_server import tool_call

pytestmark = pytest.mark.skipif(not shutil.which("bwrap"), reason="bubblewrap not installed")
# iniconfig: one small pure-python wheel with no dependencies
PROBE = "import iniconfig, sys; print('imported', iniconfig.__name__, sys.prefix)"


async def test_default_packages_are_importable_offline_and_the_cache_is_not_writable(
        app_client, enqueued, llm, monkeypatch, tmp_path) -> None:
    from app.core.config import get_settings
    from app.sandbox.wheels import wheel_dir

    monkeypatch.setenv("TASKBENCH_VENV_DEFAULT_PACKAGES", '["iniconfig"]')
    reset_settings()
    cache = wheel_dir(get_settings())
    llm.responder = Router().script(
        "pkgs", tool_call("write_file", path="probe.py", content=PROBE),
        tool_call("run_command", command="python probe.py"),
        tool_call("write_file", path="poison.py", content=(
            "import glob, os\n"
            f"print('cache visible:', os.path.exists({str(cache)!r}))\n"
            "hits = glob.glob('/workspace/**/*.whl', recursive=True) + "
            "glob.glob('/tmp/**/*.whl', recursive=True)\n"
            "print('wheels seen:', len(hits))\n")),
        tool_call("run_command", command="python poison.py"))
    # when a task runs in a fresh venv (the jail has no network)
    task = await submit_and_run(app_client, enqueued, title="pkgs", complexity=2)
    assert task["status"] == "completed", task
    # then the package was installed from the cache and imports inside the jail
    installed = [e["data"] for e in await events_of(app_client, task["id"], "venv_packages")]
    assert installed and installed[0]["ok"] and installed[0]["packages"] == ["iniconfig"]
    outputs = [e["data"]["output"] for e in await events_of(app_client, task["id"], "tool_call")
               if e["data"]["tool"] == "run_command"]
    assert "imported iniconfig /workspace/.venv" in outputs[0]
    # and the wheel cache is nowhere to be seen from the jail (nothing a task could change)
    assert "cache visible: False" in outputs[1] and "wheels seen: 0" in outputs[1]
    assert any(cache.glob("iniconfig-*.whl"))
    assert all(p.stat().st_uid == 0 and not p.stat().st_mode & 0o022 for p in cache.iterdir())


async def test_an_agent_can_ask_for_a_bare_venv(app_client, enqueued, llm, monkeypatch) -> None:
    monkeypatch.setenv("TASKBENCH_VENV_DEFAULT_PACKAGES", '["iniconfig"]')
    reset_settings()
    agent = (await app_client.post("/agents", json={
        "name": "bare", "model": "openai/gpt-4o-mini", "min_complexity": 1,
        "max_complexity": 10, "config": {"venv_packages": []}})).json()
    assert "id" in agent, agent
    llm.responder = Router().script("bare", tool_call("list_files", path="."))
    task = await submit_and_run(app_client, enqueued, title="bare", complexity=2, agent="bare")
    assert task["status"] == "completed", task
    assert await events_of(app_client, task["id"], "venv_packages") == []

"""A venv that is useful on first use (issue 14): the agent's default packages come from the
local wheel cache, which is filled once on the host and is never writable from a task."""

from __future__ import annotations

import shutil

import pytest

from app.core.config import reset_settings
from tests.factories.loop import Router, events_of
from tests.factories.wheels import make_wheel
from tests.factories.worker import submit_and_run
from tests.fakes.llm_server import tool_call

pytestmark = pytest.mark.skipif(not shutil.which("bwrap"), reason="bubblewrap not installed")
PROBE = "import tbprobe, sys; print('imported', tbprobe.VALUE, tbprobe.__file__, sys.prefix)"


def _cache_with_probe(version: str = "1.0", value: str = "from-the-cache") -> None:
    """The wheel cache holds the probe package (built here: tests never reach PyPI)."""
    from app.core.config import get_settings
    from app.sandbox.wheels import wheel_dir

    make_wheel(wheel_dir(get_settings()), "tbprobe", version, f"VALUE = {value!r}\n")


async def test_default_packages_are_importable_offline_and_the_cache_is_not_writable(
        app_client, enqueued, llm, monkeypatch, tmp_path) -> None:
    from app.core.config import get_settings
    from app.sandbox.wheels import layers_dir, wheel_dir

    monkeypatch.setenv("TASKBENCH_VENV_DEFAULT_PACKAGES", '["tbprobe"]')
    reset_settings()
    _cache_with_probe()
    cache = wheel_dir(get_settings())
    llm.responder = Router().script(
        "pkgs", tool_call("write_file", path="probe.py", content=PROBE),
        tool_call("run_command", command="python probe.py"),
        tool_call("write_file", path="poison.py", content=(
            "import glob, os, tbprobe\n"
            f"print('cache visible:', os.path.exists({str(cache)!r}))\n"
            "hits = glob.glob('/workspace/**/*.whl', recursive=True) + "
            "glob.glob('/tmp/**/*.whl', recursive=True)\n"
            "print('wheels seen:', len(hits))\n"
            "try:\n    open(tbprobe.__file__, 'a').write('VALUE = \"poisoned\"\\n')\n"
            "    print('layer written')\n"
            "except OSError as e:\n    print('layer refused', e.errno)\n"
            "try:\n    open(os.path.dirname(tbprobe.__file__) + '/evil.py', 'w')\n"
            "    print('layer grew')\n"
            "except OSError as e:\n    print('layer refused', e.errno)\n")),
        tool_call("run_command", command="python poison.py"))
    # when a task runs in a fresh venv (the jail has no network)
    task = await submit_and_run(app_client, enqueued, title="pkgs", complexity=2)
    assert task["status"] == "completed", task
    # then the package comes from the shared layer and imports inside the jail
    installed = [e["data"] for e in await events_of(app_client, task["id"], "venv_packages")]
    assert installed and installed[0]["ok"] and installed[0]["packages"] == ["tbprobe"]
    outputs = [e["data"]["output"] for e in await events_of(app_client, task["id"], "tool_call")
               if e["data"]["tool"] == "run_command"]
    assert "imported from-the-cache /opt/taskbench-base/" in outputs[0]
    assert outputs[0].rstrip().endswith("/workspace/.venv")
    # and neither the wheel cache nor the layer can be changed from the jail
    assert "cache visible: False" in outputs[1] and "wheels seen: 0" in outputs[1]
    assert outputs[1].count("layer refused") == 2, outputs[1]
    assert all(p.stat().st_uid == 0 and not p.stat().st_mode & 0o022 for p in cache.iterdir())
    layer = next(p for p in layers_dir(get_settings()).iterdir() if not p.name.startswith("."))
    assert (layer / "tbprobe.py").read_text() == "VALUE = 'from-the-cache'\n"


async def test_a_second_task_reuses_the_layer_and_its_own_install_wins(
        app_client, enqueued, llm, monkeypatch) -> None:
    from app.core.config import get_settings
    from app.sandbox.wheels import layers_dir

    monkeypatch.setenv("TASKBENCH_VENV_DEFAULT_PACKAGES", '["tbprobe"]')
    reset_settings()
    _cache_with_probe()
    llm.responder = Router().script(
        "first", tool_call("write_file", path="probe.py", content=PROBE),
        tool_call("run_command", command="python probe.py")).script(
        "second", tool_call("write_file", path="mine/tbprobe.py",
                            content="VALUE = 'the-tasks-own'\n"),
        tool_call("run_command", command="cp mine/tbprobe.py .venv/lib/python3.11/site-packages/"),
        tool_call("write_file", path="check/probe.py", content=PROBE),
        tool_call("run_command", command="python check/probe.py"))
    first = await submit_and_run(app_client, enqueued, title="first", complexity=2)
    built = {p.name: p.stat().st_mtime_ns for p in layers_dir(get_settings()).iterdir()}
    second = await submit_and_run(app_client, enqueued, title="second", complexity=2)
    assert first["status"] == second["status"] == "completed"
    # one layer, built once, shared
    assert {p.name: p.stat().st_mtime_ns for p in layers_dir(get_settings()).iterdir()} == built
    outputs = [e["data"]["output"] for e in await events_of(app_client, second["id"], "tool_call")
               if e["data"]["tool"] == "run_command"]
    assert "imported the-tasks-own /workspace/.venv/" in outputs[1]  # the venv comes first


async def test_an_offline_host_says_why_and_the_task_goes_on(
        app_client, enqueued, llm, monkeypatch) -> None:
    monkeypatch.setenv("TASKBENCH_VENV_DEFAULT_PACKAGES", '["tbprobe"]')
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens there
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    reset_settings()
    llm.responder = Router().script("offline", tool_call("run_command", command="true"))
    task = await submit_and_run(app_client, enqueued, title="offline", complexity=2)
    assert task["status"] == "completed", task
    [event] = [e["data"] for e in await events_of(app_client, task["id"], "venv_packages")]
    assert not event["ok"] and "tbprobe" in event["error"]


async def test_an_agent_can_ask_for_a_bare_venv(app_client, enqueued, llm, monkeypatch) -> None:
    monkeypatch.setenv("TASKBENCH_VENV_DEFAULT_PACKAGES", '["tbprobe"]')
    reset_settings()
    agent = (await app_client.post("/agents", json={
        "name": "bare", "model": "openai/gpt-4o-mini", "min_complexity": 1,
        "max_complexity": 10, "config": {"venv_packages": []}})).json()
    assert "id" in agent, agent
    llm.responder = Router().script("bare", tool_call("run_command", command="true"))
    task = await submit_and_run(app_client, enqueued, title="bare", complexity=2, agent="bare")
    assert task["status"] == "completed", task
    assert await events_of(app_client, task["id"], "venv_packages") == []
    (made,) = [e["data"] for e in await events_of(app_client, task["id"], "venv")]
    assert made["made_with"] in ("uv", "venv")  # the venv itself, made by the first command


async def test_a_task_that_runs_no_python_makes_no_venv(app_client, enqueued, llm,
                                                       monkeypatch) -> None:
    monkeypatch.setenv("TASKBENCH_VENV_DEFAULT_PACKAGES", '["tbprobe"]')
    reset_settings()
    llm.responder = Router().script("words", tool_call("write_file", path="notes.md",
                                                       content="just words"))
    task = await submit_and_run(app_client, enqueued, title="words", complexity=2)
    assert task["status"] == "completed", task
    assert await events_of(app_client, task["id"], "venv") == []
    from app.core.config import get_settings

    workspaces = get_settings().workspaces_dir
    assert any(workspaces.rglob("notes.md")) and not any(workspaces.rglob(".venv"))


async def test_a_half_made_venv_is_made_again_and_gets_its_packages(
        app_client, enqueued, llm, monkeypatch) -> None:
    # given a task whose venv a killed `uv venv` left without lib/ (pyvenv.cfg and bin/ only)
    from app.core.config import get_settings
    from app.sandbox.workspace import Workspace

    monkeypatch.setenv("TASKBENCH_VENV_DEFAULT_PACKAGES", '["tbprobe"]')
    reset_settings()
    _cache_with_probe()
    real_create = Workspace.create

    def create(self: Workspace, **kw: object) -> None:
        real_create(self, **kw)  # type: ignore[arg-type]
        (self.root / ".venv" / "bin").mkdir(parents=True, exist_ok=True)
        (self.root / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")

    monkeypatch.setattr(Workspace, "create", create)
    llm.responder = Router().script(
        "half", tool_call("write_file", path="probe.py", content=PROBE),
        tool_call("run_command", command="python probe.py"))
    # when its first command runs
    task = await submit_and_run(app_client, enqueued, title="half", complexity=2)
    # then the venv was made again, whole, with its default package
    assert task["status"] == "completed", task
    assert [e["data"]["made_with"] for e in await events_of(app_client, task["id"], "venv")]
    outputs = [e["data"]["output"] for e in await events_of(app_client, task["id"], "tool_call")
               if e["data"]["tool"] == "run_command"]
    assert "imported from-the-cache" in outputs[0]
    assert get_settings().workspaces_dir.is_dir()

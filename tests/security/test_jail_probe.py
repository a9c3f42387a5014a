"""Issue 17 #1: a transient bubblewrap failure never makes a command run unjailed, never
breaks a worker for life, and /health says what is going on."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from app.core.config import Settings
from app.sandbox import probe
from app.sandbox.jail import SandboxUnavailable, sandbox_mode
from app.sandbox.selftest import run_selftest
from tests.security.sandbox_support import NEEDS_BWRAP, failing_bwrap, jailed, workspace

pytestmark = NEEDS_BWRAP


@pytest.fixture(autouse=True)
def fresh_probe(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    probe.reset()
    monkeypatch.setattr(probe, "RETRY_AFTER_S", 0.0)
    yield
    probe.reset()


@pytest.mark.parametrize("mode", ["bwrap", ""])
async def test_failed_probe_refuses_then_recovers_without_running_unjailed(mode: str) -> None:
    # given a bubblewrap that fails once (EAGAIN creating a namespace), in jail and auto mode
    fake = failing_bwrap(fail_times=1)
    settings = Settings(sandbox=mode, bwrap_path=str(fake))
    try:
        with workspace() as ws:
            # when the first command comes while the jail is down
            with pytest.raises(SandboxUnavailable, match="namespace"):
                await jailed(ws, "touch", "ran-unjailed", settings=settings)
            # then it did not run at all (no "none" fallback), and the next probe recovers
            assert not (ws.root / "ran-unjailed").exists()
            res = await jailed(ws, "touch", "ran-jailed", settings=settings)
            assert (res.exit_code, res.sandbox) == (0, "bwrap")
            assert (ws.root / "ran-jailed").exists()
    finally:
        shutil.rmtree(fake.parent)


async def test_bwrap_breaking_mid_life_refuses_the_command_and_forgets_the_probe() -> None:
    # given a worker whose probe passed (the fake works for the probe, then fails twice)
    fake = failing_bwrap(fail_times=0)
    settings = Settings(sandbox="bwrap", bwrap_path=str(fake))
    try:
        with workspace() as ws:
            assert sandbox_mode(settings) == "bwrap"
            counter = fake.parent / "bwrap-calls"
            calls = int(counter.read_text())
            fake.write_text(fake.read_text().replace("-lt 0", f"-lt {calls + 2}"))
            # when bubblewrap fails at the command's own start
            with pytest.raises(SandboxUnavailable, match="could not start"):
                await jailed(ws, "touch", "x1", settings=settings)
            # then nothing ran, the probe was forgotten and fails again (refusing), then recovers
            assert not (ws.root / "x1").exists() and not probe.status()["ok"]
            with pytest.raises(SandboxUnavailable):
                await jailed(ws, "touch", "x2", settings=settings)
            res = await jailed(ws, "touch", "x3", settings=settings)
            assert res.sandbox == "bwrap" and (ws.root / "x3").exists()
            assert not (ws.root / "x1").exists() and not (ws.root / "x2").exists()
    finally:
        shutil.rmtree(fake.parent)


async def test_always_failing_bwrap_in_auto_mode_never_degrades_to_none() -> None:
    fake = failing_bwrap(fail_times=10**6)
    settings = Settings(sandbox="", bwrap_path=str(fake))
    try:
        with workspace() as ws:
            for _ in range(3):
                with pytest.raises(SandboxUnavailable):
                    await jailed(ws, "touch", "ran", settings=settings)
            assert not (ws.root / "ran").exists()
            assert probe.status()["consecutive_failures"] == 3
    finally:
        shutil.rmtree(fake.parent)


def test_health_says_refusing_while_down_and_ok_after() -> None:
    fake = failing_bwrap(fail_times=1)
    settings = Settings(sandbox="bwrap", bwrap_path=str(fake) + "-x")
    try:
        # when bubblewrap cannot be found at all
        down = run_selftest(settings)
        assert down["ok"] is False and down["refusing"] is True and down["mode"] == "bwrap"
        assert "limits" in down and down["limits"]["cgroup"] in ("v1", "v2", "none")
        # when it fails once then works: the self-test is redone, not cached forever
        settings = Settings(sandbox="bwrap", bwrap_path=str(fake))
        first = run_selftest(settings)
        assert first["ok"] is False and first["refusing"] is True
        probe.reset()
        again = run_selftest(settings)
        assert again["ok"] is True and again["refusing"] is False, again
    finally:
        shutil.rmtree(fake.parent)


async def test_a_task_whose_jail_is_down_is_handed_back_not_failed_and_resumes(
        app_client, enqueued, llm, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from app.core.config import reset_settings
    from tests.conftest import run_enqueued
    from tests.fakes.llm_server import finish, tool_call

    # given a worker whose jail is broken (the configured mode is the jail)
    monkeypatch.setenv("TASKBENCH_SANDBOX", "bwrap")
    monkeypatch.setenv("TASKBENCH_BWRAP_PATH", "/nonexistent/bwrap")
    reset_settings()
    llm.script(tool_call("run_command", command="touch made"),
               tool_call("run_command", command="touch made"),
               finish("design"), finish("build"), finish("test"))
    resp = await app_client.post("/tasks", json={"title": "jail down", "complexity": 1})
    task_id = resp.json()["id"]
    # when it runs
    assert await run_enqueued(enqueued) == ["ran"]
    # then no command ran, the task is not failed, and it waits for the sweep to re-queue it
    task = (await app_client.get(f"/tasks/{task_id}")).json()
    assert task["status"] not in ("failed", "completed"), task
    events = (await app_client.get(f"/tasks/{task_id}/events")).json()["data"]
    assert "sandbox_unavailable" in [e["type"] for e in events]
    assert not list((tmp_path / "workspaces").glob(f"*/{task_id}/made"))
    # when the jail works again and the task is delivered again, it completes
    monkeypatch.delenv("TASKBENCH_BWRAP_PATH")
    reset_settings()
    probe.reset()
    enqueued.append((task_id, ""))
    assert await run_enqueued(enqueued) == ["ran"]
    task = (await app_client.get(f"/tasks/{task_id}")).json()
    assert task["status"] == "completed", task
    assert list((tmp_path / "workspaces").glob(f"*/{task_id}/made"))


def test_a_pool_child_does_not_inherit_its_parents_verdict(monkeypatch) -> None:
    # given a parent process whose probe failed (e.g. while another task fork-bombed)
    from worker.process import _sandbox_process_init

    monkeypatch.setattr(probe, "RETRY_AFTER_S", 3600.0)
    with pytest.raises(SandboxUnavailable):
        sandbox_mode(Settings(sandbox="bwrap", bwrap_path="/nonexistent/bwrap"))
    assert probe.status()["probed"] and not probe.status()["ok"]
    # when a pool child starts, it forgets it and probes for itself
    _sandbox_process_init()
    assert not probe.status()["probed"]
    assert sandbox_mode(Settings(sandbox="bwrap")) == "bwrap"

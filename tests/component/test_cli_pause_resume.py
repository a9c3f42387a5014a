"""`taskbench tasks pause|resume` and `taskbench ecosystems live|pause|resume|stop` against a
real API server (issue 16): each says what happened in plain lines, a refusal is one line and
exit 1."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from app.ops.cli import main
from tests.factories.scenario import make_ecosystem
from tests.live_server import live_server

ADMIN = "tb_admin_" + "a" * 32


async def _cli(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, str]:
    code = await asyncio.to_thread(main, [*argv, "--api", url, "--key", ADMIN])
    out = capsys.readouterr()
    return code, out.out + out.err


async def test_tasks_pause_and_resume(db, enqueued, capsys) -> None:  # type: ignore[no-untyped-def]
    with live_server() as url:
        async with httpx.AsyncClient(base_url=f"{url}/api/v1",
                                     headers={"Authorization": f"Bearer {ADMIN}"}) as api:
            task = (await api.post("/tasks", json={"title": "t", "complexity": 2})).json()
            # when the task is paused from the command line
            code, out = await _cli(capsys, url, "tasks", "pause", str(task["id"]))
            # then it is paused, and says so
            assert code == 0 and "status      paused" in out, out
            assert (await api.get(f"/tasks/{task['id']}")).json()["status"] == "paused"
            # and pausing it again is refused in one line
            code, out = await _cli(capsys, url, "tasks", "pause", str(task["id"]))
            assert code == 1 and "cannot be paused (paused)" in out and "Traceback" not in out
            # when it is resumed, it is back in the queue
            code, out = await _cli(capsys, url, "tasks", "resume", str(task["id"]))
            assert code == 0, out
            assert (await api.get(f"/tasks/{task['id']}")).json()["status"] != "paused"


async def test_ecosystems_living_mode(db, enqueued, capsys) -> None:  # type: ignore[no-untyped-def]
    with live_server() as url:
        async with httpx.AsyncClient(base_url=f"{url}/api/v1",
                                     headers={"Authorization": f"Bearer {ADMIN}"}) as api:
            eco = str((await make_ecosystem(api, ["Ann", "Bob"]))["id"])
        code, out = await _cli(capsys, url, "ecosystems", "live", eco)
        assert code == 1 and "--turns-per-day" in out
        code, out = await _cli(capsys, url, "ecosystems", "live", eco, "--turns-per-day", "9")
        assert code == 0 and f"ecosystem {eco}: living mode on" in out, out
        assert "spent 0 of 9 turns" in out
        code, out = await _cli(capsys, url, "ecosystems", "pause", eco)
        assert code == 0 and "living mode paused" in out
        code, out = await _cli(capsys, url, "ecosystems", "resume", eco)
        assert code == 0 and "living mode on" in out and "next round" in out
        code, out = await _cli(capsys, url, "ecosystems", "stop", eco)
        assert code == 0 and "living mode off" in out
        code, out = await _cli(capsys, url, "ecosystems", "pause", eco)
        assert code == 1 and "is not living" in out
        code, out = await _cli(capsys, url, "ecosystems", "living", "99999")
        assert code == 1 and "not found" in out

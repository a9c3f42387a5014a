"""A worker whose event loop is held by a synchronous call says so, with the call's stack."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest


def test_a_stalled_loop_is_reported_with_the_blocking_stack(
    env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    from app.core.config import reset_settings
    from worker import process

    # given a worker loop watched with a half-second threshold
    monkeypatch.setenv("TASKBENCH_LOOP_STALL_S", "0.5")
    reset_settings()
    monkeypatch.setattr(process, "_loop", None)

    def walk_the_whole_disk() -> None:  # stands in for a long synchronous call
        time.sleep(1.5)

    async def run() -> str:
        await asyncio.sleep(0.3)
        walk_the_whole_disk()
        await asyncio.sleep(0.3)
        return "ran"

    # when a task's coroutine blocks the loop for 1.5 s
    try:
        with caplog.at_level(logging.WARNING, logger="app.core.watchdog"):
            assert process.run_coroutine(run()) == "ran"
    finally:
        if process._loop is not None:
            process._loop.close()  # its watchdog stops with it
    # then the stall was logged once, with the blocking function in the loop thread's stack
    stalls = [r.getMessage() for r in caplog.records if "event loop stalled" in r.getMessage()]
    assert len(stalls) == 1
    assert "walk_the_whole_disk" in stalls[0]

"""Secrets never reach an event, the API's view of a task, or a prompt."""

from __future__ import annotations

import json
import os

from tests.factories import run_enqueued
from tests.fakes.llm_server import finish, tool_call


async def test_a_secret_the_model_echoes_is_redacted_everywhere_it_is_recorded(
    app_client, enqueued, llm
):
    # given the configured LLM key, and a model that tries to leak it through a tool and a summary
    secret = os.environ["TASKBENCH_LLM_API_KEY"]
    llm.script(tool_call("write_file", path="output/leak.txt", content=f"key={secret}"),
               finish(f"design {secret}"), finish("b"), finish("t"))
    resp = await app_client.post("/tasks", json={"title": "t", "complexity": 1})
    task_id = resp.json()["id"]
    await run_enqueued(enqueued)
    # then no event and no task field carries it
    events = (await app_client.get(f"/tasks/{task_id}/events")).json()
    task = (await app_client.get(f"/tasks/{task_id}")).json()
    assert secret not in json.dumps(events) and secret not in json.dumps(task)
    assert "[redacted]" in json.dumps(events)
    # and no prompt the model was sent contains it, nor the file the model asked to write
    assert all(secret not in json.dumps(r["messages"]) for r in llm.requests)
    written = await app_client.get(f"/tasks/{task_id}/artifacts/leak.txt")
    assert written.status_code == 200 and secret not in written.text


def test_the_signing_key_made_by_another_process_is_redacted_without_a_look_per_event(
        tmp_path, monkeypatch):
    """A worker asks for the secrets at every event it records; until the installation's
    signing key exists (the API makes it), whether it has appeared is looked at on disk at most
    every KEY_FILE_RECHECK_S, not once an event (a stat each)."""
    import time
    from pathlib import Path

    from app.core import config
    from app.core.config import PLACEHOLDER_SECRET, Settings

    settings = Settings(var_dir=tmp_path, environment="development")
    assert settings.secret_key == PLACEHOLDER_SECRET
    looks: list[Path] = []
    real_is_file = Path.is_file
    monkeypatch.setattr(Path, "is_file", lambda p: looks.append(p) or real_is_file(p))
    # given a worker of an installation with no signing key yet, that has answered once
    before = settings.secrets()
    looks.clear()
    # when it records many events at once
    for _ in range(50):
        assert settings.secrets() == before
    # then it did not look at the disk for each of them
    assert looks == []
    # and once another process has made the key and the recheck is due, it is found and
    # redacted from then on
    key = config.kept_secret(tmp_path / "secret_key")
    config._kept.clear()  # made by the other process: this one has not read it
    later = time.monotonic() + config.KEY_FILE_RECHECK_S + 1
    monkeypatch.setattr(config.time, "monotonic", lambda: later)
    assert key not in before and key in settings.secrets()

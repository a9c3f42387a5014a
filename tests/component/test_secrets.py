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

"""The Agent Protocol face, driven by the published `agent-protocol-client` (not ours).

That client pins pydantic 1, which Taskbench cannot share a process with, so it lives in its
own venv (built once under ~/.cache from PyPI) and runs as a subprocess against a live server.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import textwrap

import httpx
import pytest

from tests.factories import auth, new_user_key, run_enqueued
from tests.factories.venvs import locked_venv
from tests.fakes.llm_server import finish, tool_call
from tests.live_server import live_server

ADMIN_KEY = "tb_admin_" + "a" * 32

PRELUDE = textwrap.dedent("""
    import asyncio, json, sys
    from agent_protocol_client import AgentApi, ApiClient, Configuration, TaskRequestBody
    from agent_protocol_client.models import StepRequestBody

    async def main(url, key, task_id):
        async with ApiClient(Configuration(host=url)) as client:
            client.set_default_header("Authorization", "Bearer " + key)
            api = AgentApi(client)
            out = await run(api, task_id)
        print(json.dumps(out))
""")

CREATE = PRELUDE + textwrap.dedent("""
    async def run(api, _):
        task = await api.create_agent_task(task_request_body=TaskRequestBody(
            input="Write a greeting file", additional_input={"complexity": 1}))
        import os, tempfile
        path = os.path.join(tempfile.mkdtemp(), "notes.txt")
        with open(path, "w") as fh:
            fh.write("be polite")
        art = await api.upload_agent_task_artifacts(task_id=task.task_id, file=path)
        folders = []
        for folder in ("docs/a", "docs/b"):  # the same name twice, in two folders
            with open(path, "w") as fh:
                fh.write("notes of " + folder)
            made = await api.upload_agent_task_artifacts(task_id=task.task_id, file=path,
                                                         relative_path=folder)
            folders.append([made.relative_path, made.file_name])
        step = await api.execute_agent_task_step(
            task_id=task.task_id, step_request_body=StepRequestBody(input="please be brief"))
        return {"task_id": task.task_id, "upload": art.file_name, "step": step.name,
                "step_input": step.input, "folders": folders}
    asyncio.run(main(*sys.argv[1:3], None))
""")

FOLLOW = PRELUDE + textwrap.dedent("""
    async def run(api, task_id):
        stepped = []
        while True:
            step = await api.execute_agent_task_step(
                task_id=task_id, step_request_body=StepRequestBody(additional_input={"wait_s": 0}))
            stepped.append(int(step.step_id))
            if step.is_last:
                break
        steps = await api.list_agent_task_steps(task_id=task_id, page_size=100)
        arts = await api.list_agent_task_artifacts(task_id=task_id)
        made = [a for a in arts.artifacts if a.agent_created]
        body = await api.download_agent_task_artifact(task_id=task_id,
                                                      artifact_id=made[0].artifact_id)
        bodies = {}
        for a in arts.artifacts:
            if a.relative_path.startswith("docs/"):
                got = await api.download_agent_task_artifact(task_id=task_id,
                                                             artifact_id=a.artifact_id)
                bodies[a.relative_path] = bytes(got).decode()
        task = await api.get_agent_task(task_id=task_id)
        return {"steps": [s.name for s in steps.steps], "last": step.name,
                "stepped": stepped, "listed": [int(s.step_id) for s in steps.steps],
                "artifacts": sorted([a.relative_path, a.file_name] for a in arts.artifacts),
                "body": bytes(body).decode(), "bodies": bodies,
                "status": task.additional_input["status"]}
    asyncio.run(main(*sys.argv[1:4]))
""")


@pytest.fixture(scope="session")
def ap_python() -> str:
    """The python of a venv holding agent-protocol-client as tests/locks/ap-client.txt pins it."""
    return str(locked_venv("ap-client") / "bin" / "python")


async def client_run(python: str, script: str, *args: str) -> dict:
    proc = await asyncio.create_subprocess_exec(
        python, "-c", script, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-3000:]
    return json.loads(out.decode().strip().splitlines()[-1])


async def test_agent_protocol_client_drives_a_whole_task(ap_python, db, enqueued, llm):
    # given a live server and a model that writes an output file
    llm.script(tool_call("write_file", path="output/greeting.txt", content="hello there"),
               finish("planned"), finish("built"), finish("tested"))
    with live_server() as url:
        # when the published client creates a task, uploads an input and sends a step
        created = await client_run(ap_python, CREATE, url, ADMIN_KEY)
        assert created == {"task_id": created["task_id"], "upload": "notes.txt",
                           "step": "message", "step_input": "please be brief",
                           "folders": [["docs/a", "notes.txt"], ["docs/b", "notes.txt"]]}
        await run_enqueued(enqueued)
        # and then follows it step by step to the end, lists artifacts and downloads one
        done = await client_run(ap_python, FOLLOW, url, ADMIN_KEY, created["task_id"])
    # then it saw the run as steps, the files on both sides, and the file's content
    assert done["status"] == "completed" and done["last"] == done["steps"][-1]
    assert "status" in done["steps"]
    assert "message" in done["steps"] and "phase" in done["steps"]
    assert done["artifacts"] == [["", "greeting.txt"], ["", "notes.txt"],
                                 ["docs/a", "notes.txt"], ["docs/b", "notes.txt"]]
    assert done["body"] == "hello there"
    assert done["bodies"] == {"docs/a": "notes of docs/a", "docs/b": "notes of docs/b"}
    # and stepping walked the log once, in order: every event exactly once
    assert done["stepped"] == done["listed"] == list(range(1, len(done["listed"]) + 1))


async def test_agent_protocol_is_authenticated_and_owner_scoped(app_client):
    base = str(app_client.base_url).replace("/api/v1", "")
    async with httpx.AsyncClient(transport=app_client._transport, base_url=base) as raw:
        assert (await raw.get("/ap/v1/agent/tasks")).status_code == 401
        made = await raw.post("/ap/v1/agent/tasks", json={"input": "hi"}, headers=auth(ADMIN_KEY))
        assert made.status_code == 200 and made.json()["input"] == "hi"
        task_id = made.json()["task_id"]
        other = auth(await new_user_key("other@example.com"))
        assert (await raw.get(f"/ap/v1/agent/tasks/{task_id}", headers=other)).status_code == 404
        listed = await raw.get("/ap/v1/agent/tasks", headers=other)
        assert listed.json()["pagination"]["total_items"] == 0
        bad = await raw.get(f"/ap/v1/agent/tasks/{task_id}/artifacts/Li4vLi4vZXRjL3Bhc3N3ZA",
                            headers=auth(ADMIN_KEY))  # "../../etc/passwd"
        assert bad.status_code == 404
        refused = await raw.post("/ap/v1/agent/tasks", headers=auth(ADMIN_KEY),
                                 json={"input": "x", "additional_input": {"complexity": 99}})
        assert refused.status_code == 422


async def test_key_in_url_is_opt_in_and_still_needs_a_valid_key(app_client, monkeypatch):
    from app.core.config import reset_settings

    base = str(app_client.base_url).replace("/api/v1", "")
    async with httpx.AsyncClient(transport=app_client._transport, base_url=base) as raw:
        # given the default settings: no way in by URL
        assert (await raw.get(f"/ap/k/{ADMIN_KEY}/v1/agent/tasks")).status_code == 404
        # when the operator opts in
        monkeypatch.setenv("TASKBENCH_AP_KEY_IN_URL", "true")
        reset_settings()
        # then a valid key in the path is a bearer token, a wrong one is refused
        made = await raw.post(f"/ap/k/{ADMIN_KEY}/v1/agent/tasks", json={"input": "by url"})
        assert made.status_code == 200 and made.json()["input"] == "by url"
        wrong = await raw.get("/ap/k/tb_admin_not-a-real-key-at-all/v1/agent/tasks")
        assert wrong.status_code == 401
        # and it opens the Agent Protocol only, not the rest of the API
        assert (await raw.get(f"/ap/k/{ADMIN_KEY}/v1/../../api/v1/tasks")).status_code == 404
        assert (await raw.get(f"/ap/k/{ADMIN_KEY}/api/v1/tasks")).status_code == 404


async def test_upload_folder_cannot_leave_the_input_folder(app_client):
    base = str(app_client.base_url).replace("/api/v1", "")
    async with httpx.AsyncClient(transport=app_client._transport, base_url=base) as raw:
        made = await raw.post("/ap/v1/agent/tasks", json={"input": "hi"}, headers=auth(ADMIN_KEY))
        task_id = made.json()["task_id"]
        for folder in ("../../etc", "a/../../b", "ok/\x00", "a/.git", "a//b", "new\nline"):
            resp = await raw.post(f"/ap/v1/agent/tasks/{task_id}/artifacts",
                                  headers=auth(ADMIN_KEY), data={"relative_path": folder},
                                  files={"file": ("x.txt", b"data", "text/plain")})
            assert resp.status_code == 422, (folder, resp.text)
            assert "relative_path" in resp.text
        kept = await raw.post(f"/ap/v1/agent/tasks/{task_id}/artifacts", headers=auth(ADMIN_KEY),
                              data={"relative_path": "in/side"},
                              files={"file": ("x.txt", b"data", "text/plain")})
        assert kept.status_code == 200
        assert kept.json()["relative_path"] == "in/side" and kept.json()["created_at"]


async def test_key_in_url_is_gone_from_the_request_before_anything_logs_it(monkeypatch):
    # given the opt-in, and a request scope as the server hands it to the app
    from app.api.ap_key_url import KeyInPath
    from app.core.config import reset_settings

    monkeypatch.setenv("TASKBENCH_AP_KEY_IN_URL", "true")
    reset_settings()
    seen = {}

    async def app(scope, _receive, _send):
        seen.update(scope)

    scope = {"type": "http", "path": f"/ap/k/{ADMIN_KEY}/v1/agent/tasks",
             "raw_path": f"/ap/k/{ADMIN_KEY}/v1/agent/tasks".encode(),
             "headers": [(b"authorization", b"Bearer someone-else")]}
    # when it passes the middleware
    await KeyInPath(app)(scope, None, None)
    # then the very scope the server logs from carries no key in its path, only in the header
    assert scope["path"] == "/ap/v1/agent/tasks" and ADMIN_KEY.encode() not in scope["raw_path"]
    assert scope["headers"] == [(b"authorization", f"Bearer {ADMIN_KEY}".encode())]
    assert seen["path"] == "/ap/v1/agent/tasks"
    reset_settings()

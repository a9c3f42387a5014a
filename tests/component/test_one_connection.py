"""A request holds one pooled connection at a time (issue 15): one that held a connection and
asked for a second waited for a free one, and as many such requests as the pool has
connections (SQLite 5 + 10, PostgreSQL 10 + 20) each waited out the pool's 30 s timeout into
a 503. Every route here is counted (tests/factories/connections.py), and the living rounds'
sweep; the paths that held two (uploads, scenario runs, the dashboard's forms) also run more
at once than the pool holds."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from app.integrations.report import report_path
from app.ops.sweeper import living_rounds
from tests.factories import auth, run_enqueued
from tests.factories.connections import PerRequest, counting, holding
from tests.factories.scenario import CastResponder, move
from tests.live_server import live_server

pytestmark = pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
AT_ONCE = 40  # more than either pool's connections
PAIR = {"name": "pair", "title": "Two on a bench", "setting": "A bench by the harbour.",
        "turns": 1, "objectives": ["Say hello"], "narrator": {"enabled": False},
        "analyst": {"enabled": False},
        "characters": [{"name": "Ann", "role": "cook"}, {"name": "Bob", "role": "fisher"}]}
ROOT = "http://test"


@pytest.fixture
def counted(app_client: httpx.AsyncClient) -> Iterator[PerRequest]:
    """The connections each request of `app_client` holds at once."""
    transport = app_client._transport
    assert isinstance(transport, httpx.ASGITransport)
    transport.app = counted = PerRequest(transport.app)
    with counting():
        yield counted


def made(resp: httpx.Response, code: int = 201) -> Any:
    """The answer's JSON, after checking the route did its work (not an early refusal)."""
    assert resp.status_code == code, (resp.request.method, resp.request.url.path, resp.text)
    json_body = resp.content and resp.headers.get("content-type", "").endswith("json")
    return resp.json() if json_body else resp


async def signed_in(client: httpx.AsyncClient) -> str:
    """Sign the client in to the dashboard with its own key; returns the forms' CSRF token."""
    login = await client.get(f"{ROOT}/login")
    key = client.headers["Authorization"].removeprefix("Bearer ")
    csrf = re.search(r'name="csrf" value="([^"]+)"', login.text)
    assert csrf, login.text[:300]
    made(await client.post(f"{ROOT}/login", data={"api_key": key, "csrf": csrf.group(1)}), 303)
    page = made(await client.get(f"{ROOT}/tasks"), 200)
    form = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert form, page.text[:300]
    return form.group(1)


async def played_run(client: httpx.AsyncClient, llm: Any, enqueued: Any) -> int:
    """A finished one-turn run of PAIR (stored as a template), played by the worker side."""
    made(await client.post("/templates/scenarios", json=PAIR))
    cast = CastResponder()
    cast.plans.update({"Ann": [move("Bob", "Hello, Bob.")], "Bob": [move("Ann", "Hi, Ann.")]})
    llm.responder = cast
    run = made(await client.post("/scenarios/pair/runs", json={"seed": 1}))["task_id"]
    await run_enqueued(enqueued)
    assert made(await client.get(f"/tasks/{run}"), 200)["status"] == "completed"
    return int(run)


async def task_routes(c: httpx.AsyncClient) -> None:
    task = made(await c.post("/tasks", json={"title": "t", "complexity": 1}))["id"]
    for path in ("", "/events", "/messages", "/artifacts"):
        made(await c.get(f"/tasks/{task}{path}"), 200)
    made(await c.get("/tasks"), 200)
    made(await c.post(f"/tasks/{task}/files", files={"files": ("a.txt", b"a", "text/plain")}))
    made(await c.post("/tasks/with-files", data={"task": json.dumps({"title": "w"})},
                      files={"files": ("b.txt", b"b", "text/plain")}))
    made(await c.post("/tasks/with-files", data={"task": json.dumps({"title": "refused"})},
                      files={"files": ("c.exe", b"c", "text/plain")}), 415)
    made(await c.post(f"/tasks/{task}/messages", json={"content": "note"}))
    made(await c.post(f"/tasks/{task}/pause"), 200)
    made(await c.post(f"/tasks/{task}/resume"), 200)
    made(await c.post(f"/tasks/{task}/cancel"), 200)
    # an ended task's report, as stored (the route reads the task again; rendering is
    # app.integrations.report's own test)
    report_path(task).parent.mkdir(parents=True, exist_ok=True)
    report_path(task).write_bytes(b"%PDF-1.7 stored")
    assert made(await c.get(f"/tasks/{task}/report.pdf"), 200).content == b"%PDF-1.7 stored"


async def agent_routes(c: httpx.AsyncClient) -> None:
    made(await c.get("/agents"), 200)
    agent = made(await c.post("/agents", json={
        "name": "extra", "model": "m", "min_complexity": 1, "max_complexity": 3}))["id"]
    made(await c.get(f"/agents/{agent}"), 200)
    made(await c.patch(f"/agents/{agent}", json={"max_complexity": 4}), 200)
    made(await c.delete(f"/agents/{agent}"), 204)


async def scenario_routes(c: httpx.AsyncClient, run: int) -> None:
    for path in ("/scenarios", "/scenarios/pair", "/templates/scenarios",
                 "/templates/scenarios/pair", "/templates/scenarios/pair/export"):
        made(await c.get(path), 200)
    made(await c.put("/templates/scenarios/pair", json=PAIR), 200)
    made(await c.post("/scenarios/validate", json=PAIR), 200)
    for path in ("graph", "transcript", "relationships/Ann", "outcomes", "export"):
        made(await c.get(f"/scenarios/runs/{run}/{path}"), 200)
    made(await c.post(f"/scenarios/runs/{run}/fork", json={"from_turn": 1}))
    made(await c.post(f"/scenarios/runs/{run}/batch", json={"seeds": [1, 2]}))
    made(await c.post(f"/scenarios/runs/{run}/interactions",
                      json={"from": "Ann", "to": "Bob", "content": "Again?"}))
    inline = made(await c.post("/scenarios/runs", json={"definition": PAIR}))["task_id"]
    made(await c.post(f"/scenarios/runs/{inline}/messages", json={"to": "Ann", "content": "Hi"}))
    made(await c.post("/scenarios/runs/validate", json={"definition": PAIR}), 200)


async def character_routes(c: httpx.AsyncClient) -> None:
    ids = [made(await c.post("/characters", json={"name": n, "persona": f"{n}."}))["id"]
           for n in ("Ann", "Bob")]
    made(await c.post(f"/characters/{ids[0]}/memories", json={"content": "The storm."}))
    for path in ("/characters", f"/characters/{ids[0]}", f"/characters/{ids[0]}/memories"):
        made(await c.get(path), 200)
    eco = made(await c.post("/ecosystems", json={"name": "Harbour", "characters": ids}))["id"]
    for path in ("/ecosystems", f"/ecosystems/{eco}", f"/ecosystems/{eco}/observatory"):
        made(await c.get(path), 200)
    living = {"interval_s": 60, "budget": {"turns_per_day": 4}}
    made(await c.put(f"/ecosystems/{eco}/living", json=living), 200)
    made(await c.get(f"/ecosystems/{eco}/living"), 200)
    made(await c.post(f"/ecosystems/{eco}/living/pause"), 200)
    made(await c.post(f"/ecosystems/{eco}/living/resume"), 200)
    made(await c.delete(f"/ecosystems/{eco}/living"), 200)


async def agent_protocol_routes(c: httpx.AsyncClient) -> None:
    ap = f"{ROOT}/ap/v1/agent/tasks"
    task = made(await c.post(ap, json={"input": "hi"}), 200)["task_id"]
    for path in ("", f"/{task}", f"/{task}/steps", f"/{task}/artifacts"):
        made(await c.get(f"{ap}{path}"), 200)
    made(await c.post(f"{ap}/{task}/artifacts", files={"file": ("x.txt", b"x", "text/plain")}),
         200)
    made(await c.post(f"{ap}/{task}/steps", json={"input": "more"}), 200)
    made(await c.post(f"{ap}/{task}/steps", json={"additional_input": {"wait_s": 0}}), 200)
    # a step past the last event waits for the next one
    waited = {"after": 1000, "wait_s": 0.2}
    step = made(await c.post(f"{ap}/{task}/steps", json={"additional_input": waited}), 200)
    assert step["name"] == "waiting"


async def dashboard_routes(c: httpx.AsyncClient, run: int) -> None:
    csrf = await signed_in(c)
    made(await c.post(f"{ROOT}/tasks", data={"csrf": csrf, "title": "web", "complexity": "1"}),
         303)
    task = made(await c.post("/tasks", json={"title": "t", "complexity": 1}))["id"]
    for path in (f"/tasks/{task}", "/session/token", "/agents", "/workers",
                 f"/scenarios/runs/{run}", "/ecosystems"):
        made(await c.get(f"{ROOT}{path}"), 200)
    made(await c.post(f"{ROOT}/tasks/{task}/message", data={"csrf": csrf, "content": "hi"}), 303)
    made(await c.post(f"{ROOT}/agents/1/status", data={"csrf": csrf, "enabled": "0"}), 303)
    made(await c.post(f"{ROOT}/agents/1/status", data={"csrf": csrf, "enabled": "1"}), 303)
    made(await c.post(f"{ROOT}/tasks/{task}/cancel", data={"csrf": csrf}), 303)


async def test_no_request_holds_two_connections_at_once(app_client, counted, llm, enqueued):
    # given a finished scenario run to read, fork and continue
    run = await played_run(app_client, llm, enqueued)
    # when every kind of route is called, each doing its work
    await task_routes(app_client)
    await agent_routes(app_client)
    await scenario_routes(app_client, run)
    await character_routes(app_client)
    await agent_protocol_routes(app_client)
    await dashboard_routes(app_client, run)
    for path in ("/auth/token", "/analytics", "/health", f"{ROOT}/metrics"):
        made(await (app_client.post if path == "/auth/token" else app_client.get)(path), 200)
    # then none held two connections at once, and each but the sign-in page held one (all
    # were counted)
    assert counted.more_than_one() == []
    assert [h.name for h in counted.requests if not h.most] == ["GET /login"]


async def test_no_stream_holds_two_connections_at_once(db, enqueued):
    # given a task with its first events, and a server that counts each request's connections
    served: list[PerRequest] = []

    def wrap(app: Any) -> PerRequest:
        served.append(PerRequest(app))
        return served[0]

    admin = auth(os.environ["TASKBENCH_ADMIN_API_KEY"])
    with counting(), live_server(wrap) as url:
        async with httpx.AsyncClient(base_url=url, headers=admin, timeout=30) as client:
            task = made(await client.post("/api/v1/tasks", json={"title": "t", "complexity": 1}))
            # when its events are followed over SSE and a WebSocket, and each stream ends
            stream = {"Accept": "text/event-stream"}
            async with client.stream("GET", f"/api/v1/tasks/{task['id']}/events",
                                     headers=stream) as resp:
                seen = [line async for line in _lines(resp, "event: ", 2)]
            async with connect(url.replace("http", "ws") + f"/ws/tasks/{task['id']}",
                               additional_headers=admin) as ws:
                frames = [json.loads(await ws.recv()) for _ in range(2)]
            # (the socket's handler notices the close when it next sends: give it an event)
            made(await client.post(f"/api/v1/tasks/{task['id']}/messages", json={"content": "x"}))
    # then both streams delivered the events, and no request held two connections at once
    assert seen == ["event: created", "event: status"]
    assert [f["event"]["type"] for f in frames] == ["created", "status"]
    assert [h.name for h in served[0].requests][1:3] == [
        f"GET /api/v1/tasks/{task['id']}/events", f"WS /ws/tasks/{task['id']}"]
    assert served[0].more_than_one() == []


async def _lines(resp: httpx.Response, prefix: str, count: int) -> Any:
    async for line in resp.aiter_lines():
        if line.startswith(prefix):
            yield line
            count -= 1
            if not count:
                return


async def test_more_concurrent_uploads_than_pooled_connections_all_succeed(app_client, enqueued):
    # given a task to upload to
    task = made(await app_client.post("/tasks", json={"title": "t", "complexity": 1}))["id"]
    # when files are uploaded to it, and tasks submitted with files, all at once
    uploads = [app_client.post(f"/tasks/{task}/files",
                               files={"files": (f"in{i}.txt", b"data", "text/plain")})
               for i in range(AT_ONCE // 2)]
    with_files = [app_client.post("/tasks/with-files", data={"task": json.dumps({"title": "w"})},
                                  files={"files": (f"in{i}.txt", b"data", "text/plain")})
                  for i in range(AT_ONCE // 2)]
    answers = await asyncio.gather(*uploads, *with_files)
    # then every one is stored (none waited out the pool's timeout into a 503)
    assert [r.status_code for r in answers] == [201] * AT_ONCE
    events = made(await app_client.get(f"/tasks/{task}/events"), 200)["data"]
    assert len([e for e in events if e["type"] == "files_uploaded"]) == AT_ONCE // 2


async def test_more_concurrent_scenario_runs_than_pooled_connections_all_start(
    app_client, enqueued
):
    # given a stored scenario
    made(await app_client.post("/templates/scenarios", json=PAIR))
    # when runs of it, and runs of it given whole, all start at once
    answers = await asyncio.gather(
        *(app_client.post("/scenarios/pair/runs", json={"seed": i}) for i in range(AT_ONCE // 2)),
        *(app_client.post("/scenarios/runs", json={"definition": PAIR, "seed": i})
          for i in range(AT_ONCE // 2)))
    # then every one is a new run (none waited out the pool's timeout into a 503)
    assert [r.status_code for r in answers] == [201] * AT_ONCE
    assert len({r.json()["task_id"] for r in answers}) == AT_ONCE


async def test_more_concurrent_dashboard_forms_than_pooled_connections_all_succeed(
    app_client, enqueued
):
    # given a person signed in to the dashboard
    csrf = await signed_in(app_client)
    # when tasks are submitted and agents switched on its forms, all at once
    answers = await asyncio.gather(
        *(app_client.post(f"{ROOT}/tasks", data={"csrf": csrf, "title": f"t{i}",
                                                 "complexity": "1"})
          for i in range(AT_ONCE * 3 // 4)),
        *(app_client.post(f"{ROOT}/agents/1/status", data={"csrf": csrf, "enabled": "1"})
          for _ in range(AT_ONCE // 4)))
    # then every one went through to its page (none waited out the pool's timeout into a 503)
    assert [r.status_code for r in answers] == [303] * AT_ONCE
    pages = [r.headers["location"] for r in answers]
    assert all(re.fullmatch(r"/tasks/\d+", p) for p in pages[:AT_ONCE * 3 // 4]), pages
    assert set(pages[AT_ONCE * 3 // 4:]) == {"/agents"}


async def test_the_living_rounds_sweep_holds_one_connection_at_a_time(app_client, llm, enqueued):
    # given a living ecosystem whose one-turn rounds are due at once
    cast = CastResponder()
    cast.plans.update({"Ann": [move("Bob", "Nets.")], "Bob": [move("Ann", "Aye.")]})
    llm.responder = cast
    ids = [made(await app_client.post("/characters", json={"name": n}))["id"]
           for n in ("Ann", "Bob")]
    eco = made(await app_client.post("/ecosystems", json={"name": "Harbour", "characters": ids}))
    round_ = {"name": "day", "title": "A day", "setting": "The harbour.", "turns": 1,
              "analyst": {"enabled": False}, "cast": [{"character": "Ann"}, {"character": "Bob"}]}
    made(await app_client.put(f"/ecosystems/{eco['id']}/living", json={
        "definition": round_, "interval_s": 0, "budget": {"turns_per_day": 4}}), 200)
    # when the sweep starts a round, the round is played, and the sweep settles it
    with counting():
        with holding("start") as start:
            await living_rounds()
        started = made(await app_client.get(f"/ecosystems/{eco['id']}/living"), 200)
        await run_enqueued(enqueued)
        with holding("settle") as settle:
            await living_rounds()
    # then it did, one connection at a time
    settled = made(await app_client.get(f"/ecosystems/{eco['id']}/living"), 200)
    assert started["round_in_flight"] is not None
    assert (settled["rounds"], settled["round_in_flight"]) == (1, None)
    assert (start.most, settle.most) == (1, 1)

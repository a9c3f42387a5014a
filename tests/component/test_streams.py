"""Live streams against a real uvicorn: SSE and WebSocket delivery, resume, auth, overflow."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
import redis
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.factories import auth, new_user_key, run_enqueued
from tests.fakes.llm_server import finish, tool_call
from tests.integration.workers import wait_for
from tests.live_server import free_port, live_server

ADMIN = {"Authorization": f"Bearer {'tb_admin_' + 'a' * 32}"}


@pytest.fixture
def server(db, enqueued):
    with live_server() as url:
        yield url


async def sse_events(client: httpx.AsyncClient, url: str, *, until: Any, headers=None,
                     stop_after: int | None = None) -> list[dict[str, Any]]:
    """Read SSE frames until `until(event)` is true or `stop_after` events; returns the events."""
    got: list[dict[str, Any]] = []
    hdrs = {"Accept": "text/event-stream", **(headers or {})}
    async with client.stream("GET", url, headers=hdrs) as resp:
        assert resp.status_code == 200, await resp.aread()
        assert resp.headers["content-type"].startswith("text/event-stream")
        frame: dict[str, str] = {}
        async for line in resp.aiter_lines():
            if line:
                name, _, value = line.partition(": ")
                frame[name] = value
                continue
            if "data" in frame and frame.get("event") != "overflow":
                event = json.loads(frame["data"])
                assert frame["id"] == str(event["seq"]) and frame["event"] == event["type"]
                got.append(event)
                if until(event) or (stop_after and len(got) >= stop_after):
                    return got
            frame = {}
    return got


async def new_task(client: httpx.AsyncClient) -> int:
    made = await client.post("/api/v1/tasks", json={"title": "t", "complexity": 1})
    return int(made.json()["id"])


def is_done(event: dict[str, Any]) -> bool:
    return event["type"] == "status" and event["data"]["status"] in {"completed", "failed"}


def script_three_phases(llm) -> None:
    llm.script(tool_call("write_file", path="output/a.txt", content="a"), finish("plan"),
               finish("built"), finish("tested"))


async def test_sse_client_connected_before_start_gets_every_event_in_order(server, enqueued, llm):
    # given a task and an SSE client that connects before the worker starts it
    script_three_phases(llm)
    async with httpx.AsyncClient(base_url=server, headers=ADMIN, timeout=30) as client:
        task_id = await new_task(client)
        follower = asyncio.create_task(
            sse_events(client, f"/api/v1/tasks/{task_id}/events", until=is_done))
        await asyncio.sleep(0.3)
        # when the worker side runs it
        await run_enqueued(enqueued)
        got = await asyncio.wait_for(follower, 20)
        # then the stream carried the whole log, in order, each event once
        log = (await client.get(f"/api/v1/tasks/{task_id}/events")).json()["data"]
    assert [e["seq"] for e in got] == list(range(1, len(got) + 1))
    assert [(e["seq"], e["type"]) for e in got] == [(e["seq"], e["type"]) for e in log][:len(got)]
    assert got[-1]["data"]["status"] == "completed"


async def test_sse_reconnect_with_last_event_id_misses_nothing_and_repeats_nothing(
        server, enqueued, llm):
    # given a client that reads four events of a running task, then drops
    script_three_phases(llm)
    async with httpx.AsyncClient(base_url=server, headers=ADMIN, timeout=30) as client:
        task_id = await new_task(client)
        url = f"/api/v1/tasks/{task_id}/events"
        dropping = asyncio.create_task(sse_events(client, url, until=is_done, stop_after=4))
        await asyncio.sleep(0.3)
        await run_enqueued(enqueued)
        first = await asyncio.wait_for(dropping, 20)
        assert len(first) == 4
        # when it reconnects with Last-Event-ID
        rest = await asyncio.wait_for(sse_events(
            client, url, until=is_done, headers={"Last-Event-ID": str(first[-1]["seq"])}), 20)
    # then the two halves are the whole log, without a gap or a repeat
    seqs = [e["seq"] for e in first + rest]
    assert seqs == list(range(1, len(seqs) + 1))
    assert rest[-1]["data"]["status"] == "completed"


async def test_other_users_stream_is_404_sse_and_ws(server, enqueued):
    other = await new_user_key("other@example.com")
    async with httpx.AsyncClient(base_url=server, headers=ADMIN, timeout=10) as client:
        task_id = await new_task(client)
        sse = await client.get(f"/api/v1/tasks/{task_id}/events",
                               headers={"Accept": "text/event-stream", **auth(other)})
        assert sse.status_code == 404
        minted = await client.post("/api/v1/auth/token", headers=auth(other))
        token = minted.json()["access_token"]
    ws_url = server.replace("http", "ws")
    with pytest.raises(InvalidStatus) as denied:
        async with connect(f"{ws_url}/ws/tasks/{task_id}?token={token}"):
            pass
    assert denied.value.response.status_code == 404
    with pytest.raises(InvalidStatus) as not_admin:
        async with connect(f"{ws_url}/ws/events?token={token}"):
            pass
    assert not_admin.value.response.status_code == 403


async def test_websocket_with_token_streams_task_and_global_status(server, enqueued, llm):
    # given a token minted from the admin key, a task follower and a global status follower
    script_three_phases(llm)
    ws_url = server.replace("http", "ws")
    async with httpx.AsyncClient(base_url=server, headers=ADMIN, timeout=10) as client:
        minted = (await client.post("/api/v1/auth/token")).json()
        task_id = await new_task(client)
        # the token also works as a Bearer credential
        as_bearer = await client.get(f"/api/v1/tasks/{task_id}",
                                     headers=auth(minted["access_token"]))
        assert as_bearer.status_code == 200
    token = minted["access_token"]
    assert minted["expires_in"] == 900
    async with connect(f"{ws_url}/ws/tasks/{task_id}?token={token}") as task_ws, \
            connect(f"{ws_url}/ws/events?token={token}") as status_ws:
        await asyncio.sleep(0.3)
        # when the task runs
        await run_enqueued(enqueued)
        events = []
        while not events or not is_done(events[-1]):
            frame = json.loads(await asyncio.wait_for(task_ws.recv(), 10))
            if frame["type"] == "event":
                events.append(frame["event"])
        status = json.loads(await asyncio.wait_for(status_ws.recv(), 10))
    # then both saw it: every event in order, and its status change on the global feed
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert status["type"] == "event" and status["event"]["task_id"] == task_id
    assert status["event"]["type"] == "status"


async def _status_followers(count: int) -> bool:
    """Whether the hubs of every event loop (the live server's among them) have `count`
    global status followers."""
    from app.api.live import _hubs

    return sum(len(hub.status_subs) for hub in list(_hubs.values())) == count


async def test_a_closed_websocket_lets_go_of_its_feed_at_once(server):
    # given an admin following the global status feed over a WebSocket, which nothing is
    # sent on (no task changes status; its keep-alive ping comes every 15 s)
    async with httpx.AsyncClient(base_url=server, headers=ADMIN, timeout=10) as client:
        token = (await client.post("/api/v1/auth/token")).json()["access_token"]
    url = f"{server.replace('http', 'ws')}/ws/events?token={token}"
    async with connect(url):
        await wait_for(lambda: _status_followers(1), timeout=5, interval=0.02)
    # when the client closes, then the server's handler ends and its subscription goes with
    # it, well before the next ping would have found the client gone
    await wait_for(lambda: _status_followers(0), timeout=5, interval=0.02)


async def test_tokens_refuse_forgery_keys_in_query_and_self_renewal(server):
    async with httpx.AsyncClient(base_url=server, headers=ADMIN, timeout=10) as client:
        token = (await client.post("/api/v1/auth/token")).json()["access_token"]
        header, payload, sig = token.split(".")
        forged = f"{header}.{payload}.{sig[:-2]}AA"
        assert (await client.get("/api/v1/tasks", headers=auth(forged))).status_code == 401
        renewed = await client.post("/api/v1/auth/token", headers=auth(token))
        assert renewed.status_code == 401
        key_in_query = await client.get(
            "/api/v1/tasks/1/events", params={"token": ADMIN["Authorization"][7:]},
            headers={"Authorization": ""})
        assert key_in_query.status_code == 401


async def test_slow_client_gets_overflow_with_resume_point(db, monkeypatch):
    # given a tiny per-client buffer
    from app.api.live import follow, get_hub
    from app.core.config import reset_settings

    monkeypatch.setenv("TASKBENCH_STREAM_QUEUE_SIZE", "3")
    reset_settings()
    stream = follow(999, after=0, idle_s=5)
    # when more events arrive than the client reads
    hub = get_hub()
    pending = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0.1)
    for seq in range(1, 6):
        hub.deliver({"task_id": 999, "seq": seq, "type": "x", "data": {}, "created_at": ""})
    items = [await pending]
    items += [await stream.__anext__() for _ in range(3)]
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()
    # then it got what fitted, and an overflow telling it to resume from its last seq
    assert [i.data["seq"] for i in items[:3]] == [1, 2, 3]
    assert items[3].kind == "overflow" and items[3].data == {"resume_from": 3}


async def test_the_api_stops_its_event_source_before_its_connections_close(db, monkeypatch):
    # given the API running on this loop, its table poller reading without pause for a follower
    from app.api.live import get_hub
    from app.core.config import reset_settings
    from app.main import create_app

    monkeypatch.setenv("TASKBENCH_STREAM_POLL_S", "0")
    reset_settings()
    app = create_app(sweeper=False)
    async with app.router.lifespan_context(app):
        hub = get_hub()
        sub = await hub.subscribe(123)
        source = hub._source
        assert source is not None and not source.done()
        await asyncio.sleep(0.05)  # a few reads
    # when the API shuts down (its follower never went), then its source has ended with it, not
    # left querying through connections the shutdown closed until the loop itself ends
    assert source.done()
    hub.unsubscribe(sub)


def test_placeholder_secret_is_refused_outside_development():
    from pydantic import ValidationError

    from app.core.config import Settings

    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(environment="production")
    assert Settings(environment="production", secret_key="x" * 40).secret_key == "x" * 40


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of this test's own on a free port; yields its base URL (no database)."""
    if not shutil.which("redis-server"):
        pytest.skip("needs redis-server")
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,
                             check=False).stdout.strip() != b"PONG":
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(5)


async def _subscribed_follower(url: str, task_id: int, monkeypatch) -> tuple[Any, Any]:
    """A follower of `task_id` whose Redis subscription is in place (pattern count > 0)."""
    from app.api.live import follow
    from app.core.config import reset_settings

    monkeypatch.setenv("TASKBENCH_REDIS_URL", url)
    reset_settings()
    stream = follow(task_id, after=0, idle_s=30)
    pending = asyncio.ensure_future(stream.__anext__())
    port = url.rsplit(":", 1)[1].split("/")[0]
    deadline = time.monotonic() + 20
    while subprocess.run(["redis-cli", "-p", port, "pubsub", "numpat"],
                         capture_output=True, check=False).stdout.strip() in (b"", b"0"):
        assert time.monotonic() < deadline, "the follower never subscribed"
        await asyncio.sleep(0.05)
    return stream, pending


async def test_redis_pubsub_reaches_followers_in_another_process(db, monkeypatch, private_redis):
    # given a follower of a task with an empty log, subscribed through Redis
    from app.tasks.pubsub import publish_payloads

    url = f"{private_redis}/0"
    stream, pending = await _subscribed_follower(url, 4242, monkeypatch)
    # when another process publishes the task's next event on its channel
    publish_payloads(url, [{"task_id": 4242, "seq": 1, "type": "status",
                            "data": {"status": "assigned"}, "created_at": ""}])
    item = await asyncio.wait_for(pending, 5)
    await stream.aclose()
    # then the follower here received it through Redis
    assert item.kind == "event" and item.data["data"] == {"status": "assigned"}


async def test_a_worker_process_publishes_its_events_to_redis(db, monkeypatch, private_redis):
    """Events committed by a process that never imports the API (a worker) reach followers in
    the API through Redis, not only on their idle re-read of the log 15 s later."""
    url = f"{private_redis}/3"
    stream, pending = await _subscribed_follower(url, 777, monkeypatch)
    # when a worker-like process (app.tasks only, no app.api) publishes a committed event
    code = (
        "import sys\n"
        "from datetime import datetime, timezone\n"
        "from app.models import TaskEvent\n"
        "from app.tasks.events import publish\n"
        "publish([TaskEvent(task_id=777, seq=1, type='log', data={'line': 'from the worker'},"
        " created_at=datetime.now(timezone.utc))])\n"
        "assert 'app.api' not in sys.modules\n"
    )
    env = {**os.environ, "TASKBENCH_REDIS_URL": url}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    # then the follower gets it at once, well before any idle re-read (idle_s=30)
    item = await asyncio.wait_for(pending, 10)
    await stream.aclose()
    assert item.kind == "event" and item.data["data"] == {"line": "from the worker"}


async def test_installations_on_other_redis_databases_do_not_cross_talk(
    db, monkeypatch, private_redis
):
    """Pub/sub channels are global to a Redis server: an installation on database 2 must not
    deliver its task 31's events to followers of task 31 on database 1."""
    from app.tasks.pubsub import publish_payloads

    stream, pending = await _subscribed_follower(f"{private_redis}/1", 31, monkeypatch)
    publish_payloads(f"{private_redis}/2", [{"task_id": 31, "seq": 1, "type": "log",
                                              "data": {"who": "the other installation"},
                                              "created_at": ""}])
    publish_payloads(f"{private_redis}/1", [{"task_id": 31, "seq": 1, "type": "log",
                                              "data": {"who": "ours"}, "created_at": ""}])
    item = await asyncio.wait_for(pending, 5)
    await stream.aclose()
    assert item.data["data"] == {"who": "ours"}


async def test_the_redis_listener_reconnects_after_an_outage(db, monkeypatch, private_redis,
                                                              tmp_path):
    """Redis restarts under a follower: the API's listener reconnects by itself and live events
    flow again, without waiting for a new client to subscribe."""
    from app.tasks.pubsub import publish_payloads

    url = f"{private_redis}/0"
    port = private_redis.rsplit(":", 1)[1]
    stream, pending = await _subscribed_follower(url, 55, monkeypatch)
    # when Redis goes away and comes back on the same port
    subprocess.run(["redis-cli", "-p", port, "shutdown", "nosave"], capture_output=True,
                   check=False)
    await asyncio.sleep(1.0)
    again = subprocess.Popen(["redis-server", "--port", port, "--save", "", "--appendonly", "no",
                              "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while subprocess.run(["redis-cli", "-p", port, "pubsub", "numpat"],
                             capture_output=True, check=False).stdout.strip() in (b"", b"0"):
            assert time.monotonic() < deadline, "the listener never resubscribed"
            await asyncio.sleep(0.05)
        # then an event published afterwards reaches the follower live
        publish_payloads(url, [{"task_id": 55, "seq": 1, "type": "log",
                                "data": {"after": "the outage"}, "created_at": ""}])
        item = await asyncio.wait_for(pending, 10)
        await stream.aclose()
    finally:
        again.terminate()
        again.wait(5)
    assert item.data["data"] == {"after": "the outage"}


async def test_publishing_does_not_wait_for_redis_to_answer(db, monkeypatch, private_redis):
    """A run publishes its events after each commit, on the event loop: Redis busy for a
    while (here paused by CLIENT PAUSE) must not hold the run up or lose the events. The
    publisher's connection takes no replies, so nothing waits; a pipeline that read its
    replies timed out after 0.5 s and dropped the events."""
    from app.tasks.pubsub import publish_payloads

    url = f"{private_redis}/0"
    stream, pending = await _subscribed_follower(url, 91, monkeypatch)
    assert publish_payloads(url, [{"task_id": 90, "seq": 1, "type": "log", "data": {},
                                   "created_at": ""}])  # the publisher's connection is up
    port = private_redis.rsplit(":", 1)[1]
    # given Redis paused for 2 s (every client's writes, PUBLISH included, wait)
    subprocess.run(["redis-cli", "-p", port, "client", "pause", "2000", "write"],
                   capture_output=True, check=True)
    # when an event is published meanwhile
    taken = publish_payloads(url, [{"task_id": 91, "seq": 1, "type": "log",
                                    "data": {"while": "paused"}, "created_at": ""}])
    # then the publisher handed it over without waiting for Redis's answer (which would have
    # timed out: False, the event dropped)
    assert taken is True
    # and the follower receives it once Redis goes on
    item = await asyncio.wait_for(pending, 10)
    await stream.aclose()
    assert item.data["data"] == {"while": "paused"}


def test_the_first_event_after_a_redis_restart_is_not_written_into_the_dead_connection(
        private_redis, tmp_path):
    """The publisher's connection takes no replies, so a Redis that restarted under it is seen
    only as its socket's end: looked for before each write, else the first events after the
    restart go into the closed socket and are lost to every live follower."""
    from app.tasks.pubsub import publish_payloads, task_channel

    url, port = f"{private_redis}/0", private_redis.rsplit(":", 1)[1]

    def event(seq: int) -> dict[str, Any]:
        return {"task_id": 57, "seq": seq, "type": "log", "data": {"n": seq}, "created_at": ""}

    # given a publisher whose connection is up
    assert publish_payloads(url, [event(1)])
    # when Redis restarts on the same port, and a follower subscribes to the task
    subprocess.run(["redis-cli", "-p", port, "shutdown", "nosave"], capture_output=True,
                   check=False)
    time.sleep(0.5)
    again = subprocess.Popen(["redis-server", "--port", port, "--save", "", "--appendonly", "no",
                              "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", port, "ping"], capture_output=True,
                             check=False).stdout.strip() != b"PONG":
            assert time.monotonic() < deadline, "redis-server did not come back"
            time.sleep(0.05)
        follower = redis.Redis.from_url(url).pubsub()
        follower.subscribe(task_channel(url, 57))
        assert follower.get_message(timeout=5)["type"] == "subscribe"
        # then the first event published after it reaches the follower
        assert publish_payloads(url, [event(2)])
        got = follower.get_message(timeout=5)
        follower.close()
    finally:
        again.terminate()
        again.wait(5)
    assert got is not None and json.loads(got["data"])["data"] == {"n": 2}

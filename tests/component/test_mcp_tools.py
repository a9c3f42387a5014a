"""MCP servers as tool sources (issue 14): a real MCP server (the official SDK) over streamable
HTTP on loopback, an agent that names it, and the scripted model calling its tools."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest

from app.core.config import reset_settings
from tests.factories.loop import Router, events_of, requests_about
from tests.factories.worker import submit_and_run
from tests.fakes.llm_server import tool_call
from tests.fakes.mcp_server import STDIO_MARK, McpCalc, stdio_command


@pytest.fixture
def calc():
    with McpCalc() as server:
        yield server


async def _agent(app_client, name, servers, allowed=None):  # type: ignore[no-untyped-def]
    body = {"name": name, "model": "openai/gpt-4o-mini", "min_complexity": 1,
            "max_complexity": 10, "config": {"mcp_servers": servers}}
    if allowed is not None:
        body["allowed_tools"] = allowed
    made = await app_client.post("/agents", json=body)
    assert made.status_code == 201, made.text


def _allow(monkeypatch, calc) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TASKBENCH_FETCH_ALLOW_HOSTS", json.dumps([f"127.0.0.1:{calc.port}"]))
    reset_settings()


def _tool_outputs(events, name):  # type: ignore[no-untyped-def]
    return [e["data"] for e in events if e["data"]["tool"] == name]


async def test_an_agent_calls_a_tool_of_its_mcp_server(app_client, enqueued, llm, calc,
                                                       monkeypatch) -> None:
    _allow(monkeypatch, calc)
    await _agent(app_client, "calcbot", [{"name": "calc", "url": calc.url}])
    llm.responder = Router().script(
        "sum", tool_call("mcp__calc__add", a=2, b=3),
        tool_call("mcp__calc__picture"), tool_call("mcp__calc__broken"),
        tool_call("mcp__calc__flood"))
    task = await submit_and_run(app_client, enqueued, title="sum", complexity=2, agent="calcbot")
    assert task["status"] == "completed", task
    # the model was offered the server's tools, namespaced, with their schemas
    first = requests_about(llm.requests, "sum")[0]
    offered = {t["function"]["name"]: t["function"] for t in first["tools"]}
    assert "mcp__calc__add" in offered and "mcp__calc__shout" in offered
    assert offered["mcp__calc__add"]["parameters"]["required"] == ["a", "b"]
    # and the results came back as hostile text: the sum, an image described, an error, a cap
    calls = [e["data"] for e in await events_of(app_client, task["id"], "tool_call")]
    (added,) = [c for c in calls if c["tool"] == "mcp__calc__add"]
    assert added["ok"] and added["output"].strip() == "5"
    (picture,) = [c for c in calls if c["tool"] == "mcp__calc__picture"]
    assert "[image: image/png" in picture["output"] and "PNG" not in picture["output"]
    (broken,) = [c for c in calls if c["tool"] == "mcp__calc__broken"]
    assert not broken["ok"] and broken["output"].startswith("Error from the MCP tool")
    flood_result = [m for r in requests_about(llm.requests, "sum") for m in r["messages"]
                    if m.get("role") == "tool" and "spam spam" in str(m.get("content"))]
    assert flood_result and max(len(str(m["content"])) for m in flood_result) < 60_000
    listed = (await events_of(app_client, task["id"], "mcp_tools"))[0]["data"]["tools"]
    assert "mcp__calc__add" in listed
    # two tool names that are one once made safe: the first is offered, once; the other is
    # left out and said so (a duplicate function name would make the provider refuse the call)
    names = [t["function"]["name"] for t in first["tools"]]
    assert names.count("mcp__calc__twin_name") == 1 and len(names) == len(set(names))
    (clash,) = [e["data"] for e in await events_of(app_client, task["id"], "mcp_unavailable")]
    assert clash["server"] == "calc" and "'twin_name' left out" in clash["error"]


async def test_the_allow_list_covers_mcp_tools(app_client, enqueued, llm, calc,
                                               monkeypatch) -> None:
    _allow(monkeypatch, calc)
    await _agent(app_client, "narrow", [{"name": "calc", "url": calc.url}],
                 allowed=["mcp__calc__add", "list_files", "finish"])
    llm.responder = Router().script("narrow", tool_call("mcp__calc__shout", text="hi"))
    task = await submit_and_run(app_client, enqueued, title="narrow", complexity=2,
                                agent="narrow")
    offered = {t["function"]["name"] for t in requests_about(llm.requests, "narrow")[0]["tools"]}
    assert "mcp__calc__add" in offered and "mcp__calc__shout" not in offered
    (shout,) = [e["data"] for e in await events_of(app_client, task["id"], "tool_call")
                if e["data"]["tool"] == "mcp__calc__shout"]
    assert not shout["ok"] and "HI" not in shout["output"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_server_that_cannot_be_reached_or_is_private_is_skipped(
        app_client, enqueued, llm, calc, monkeypatch) -> None:
    dead = _closed_port()
    monkeypatch.setenv("TASKBENCH_FETCH_ALLOW_HOSTS", json.dumps([f"127.0.0.1:{dead}"]))
    reset_settings()
    await _agent(app_client, "lonely", [
        {"name": "dead", "url": f"http://127.0.0.1:{dead}/mcp", "timeout_s": 5},
        {"name": "private", "url": calc.url}])  # loopback, not allowed here
    llm.responder = Router().script("lonely", tool_call("list_files", path="."))
    task = await submit_and_run(app_client, enqueued, title="lonely", complexity=2,
                                agent="lonely")
    assert task["status"] == "completed", task
    failures = {e["data"]["server"]: e["data"]["error"]
                for e in await events_of(app_client, task["id"], "mcp_unavailable")}
    assert set(failures) == {"dead", "private"}
    assert failures["private"].startswith("refused")


NEEDS_BWRAP = pytest.mark.skipif(not shutil.which("bwrap"), reason="bubblewrap not installed")


@NEEDS_BWRAP
async def test_a_stdio_server_runs_in_the_tasks_jail(app_client, enqueued, llm, calc) -> None:
    await _agent(app_client, "jailbot", [
        {"name": "tools", "transport": "stdio", "command": stdio_command(),
         "env": {"MY_FLAG": "1"}},
        {"name": "crash", "transport": "stdio", "timeout_s": 10,
         "command": ["python3", "-c", "import sys; sys.stderr.write('no such module'); exit(3)"]},
    ], allowed=["mcp__tools__*", "finish"])
    host_port = calc.port  # a listening loopback port of the host: the jail must not reach it
    llm.responder = Router().script(
        "jailed", tool_call("mcp__tools__add", a=40, b=2),
        tool_call("mcp__tools__probe", port=host_port), tool_call("mcp__tools__flood"),
        tool_call("list_files", path="."))
    task = await submit_and_run(app_client, enqueued, title="jailed", complexity=2,
                                agent="jailbot")
    assert task["status"] == "completed", task
    calls = {c["tool"]: c for c in [e["data"] for e in await events_of(
        app_client, task["id"], "tool_call")]}
    assert calls["mcp__tools__add"]["ok"] and calls["mcp__tools__add"]["output"].strip() == "42"
    seen = json.loads(calls["mcp__tools__probe"]["output"])
    assert seen["cwd"] == "/workspace" and seen["uid"] not in (0, os.getuid())
    assert not seen["net"] and not seen["sees_work"] and not seen["sees_etc"]
    assert "MY_FLAG" in seen["env"] and not [k for k in seen["env"] if "TASKBENCH" in k]
    assert len(calls["mcp__tools__flood"]["output"]) < 60_000
    assert not calls["list_files"]["ok"]  # the allow-list names the server's tools only
    (crash,) = [e["data"] for e in await events_of(app_client, task["id"], "mcp_unavailable")]
    assert crash["server"] == "crash" and "no such module" in crash["error"]
    # the run is over: nothing of either server is left running on the host
    assert _running(STDIO_MARK) == [] and _running("no such module") == []


def _running(fragment: str) -> list[int]:
    """Host processes whose command line holds `fragment`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if fragment.encode() in cmdline and int(pid) != os.getpid():
            found.append(int(pid))
    return found


async def test_a_stdio_server_is_not_started_without_bubblewrap(app_client, enqueued, llm,
                                                                monkeypatch) -> None:
    monkeypatch.setenv("TASKBENCH_SANDBOX", "none")
    reset_settings()
    await _agent(app_client, "unjailed", [
        {"name": "tools", "transport": "stdio", "command": stdio_command()}])
    llm.responder = Router().script("unjailed", tool_call("mcp__tools__add", a=1, b=2))
    task = await submit_and_run(app_client, enqueued, title="unjailed", complexity=2,
                                agent="unjailed")
    assert task["status"] == "completed", task
    (failure,) = [e["data"] for e in await events_of(app_client, task["id"], "mcp_unavailable")]
    assert failure["server"] == "tools" and "bubblewrap" in failure["error"]
    (call,) = [e["data"] for e in await events_of(app_client, task["id"], "tool_call")
               if e["data"]["tool"] == "mcp__tools__add"]
    assert not call["ok"]


@pytest.mark.parametrize(("server", "loc"), [
    ({"name": "x", "transport": "stdio"}, ["command"]),
    ({"name": "x", "transport": "stdio", "command": "sh -c id"}, ["command"]),
    ({"name": "x", "transport": "stdio", "command": ["sh"], "env": {"LD_PRELOAD": "/x.so"}},
     ["env", "LD_PRELOAD"]),
    ({"name": "x", "transport": "stdio", "command": ["sh"], "url": "https://e.com"}, ["url"]),
    ({"name": "x", "transport": "ws", "url": "https://example.com/mcp"}, ["transport"]),
    ({"name": "x", "url": "file:///etc/passwd"}, ["url"]),
    ({"name": "Bad Name", "url": "https://example.com/mcp"}, ["name"]),
    ({"name": "a__b", "url": "https://example.com/mcp"}, ["name"]),
    ({"name": "x", "url": "https://example.com/mcp", "headers": {"a": "b\nc"}}, ["headers"]),
    ({"name": "x", "url": "https://example.com/mcp", "run": "me"}, ["run"]),
])
async def test_a_bad_mcp_server_entry_is_a_422_naming_it(app_client, server, loc) -> None:
    resp = await app_client.post("/agents", json={
        "name": "bad", "model": "m", "min_complexity": 1, "max_complexity": 2,
        "config": {"mcp_servers": [server]}})
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"][0]["loc"] == ["body", "config", "mcp_servers", 0, *loc]

"""Playbooks: refused at submission with the step and field named; run end to end for real.

The run tests use the shared `env` fixture (a migrated SQLite database, the scripted LLM) and a
real RunContext; the tool-only playbook runs with no LLM call at all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlmodel import col, select

from app.core.config import get_settings
from app.core.db import session_scope
from app.kinds.playbook import schema as playbook_schema
from app.kinds.playbook.schema import PlaybookInvalid, parse_playbook, playbook_names
from app.models import Agent, Task, TaskEvent, User
from app.run.budget import Limits
from app.run.context import RunContext
from app.run.errors import AgentFailed
from app.run.playbook import list_playbooks, run_playbook, validate_playbook_request
from app.sandbox.workspace import Workspace
from app.tools import REGISTRY
from tests.fakes.llm_server import ScriptedLLM, text

DESIGN_TOOLS = {
    "read_file",
    "write_file",
    "list_files",
    "run_command",
    "pip_install",
    "run_python",
    "web_search",
    "fetch_url",
    "make_report",
    "send_email",
    "open_pull_request",
    "delegate",
    "finish",
}

TOOL_ONLY = {
    "name": "tool_only",
    "description": "Files only: no model.",
    "inputs": {
        "name": {"type": "string"},
        "count": {"type": "integer", "default": 2},
        "shout": {"type": "boolean", "default": False},
    },
    "steps": [
        {
            "id": "hello",
            "tool": "write_file",
            "args": {"path": "output/hello.txt", "content": "Hello {{ inputs.name }}!"},
        },
        {
            "id": "parts",
            "tool": "write_file",
            "for_each": "range(inputs.count) | list",
            "args": {"path": "output/part{{ index }}.txt", "content": "{{ item * 10 }}"},
        },
        {
            "id": "loud",
            "when": "inputs.shout",
            "tool": "write_file",
            "args": {"path": "output/loud.txt", "content": "{{ inputs.name | upper }}"},
        },
        {
            "id": "flaky",
            "tool": "read_file",
            "args": {"path": "output/missing.txt"},
            "retries": 2,
            "on_error": "continue",
        },
        {"id": "listing", "tool": "list_files", "args": {"path": "output"}},
        {
            "id": "verify",
            "check": True,
            "tool": "read_file",
            "args": {"path": "output/hello.txt"},
            "ok_if": "'Hello' in result.output",
        },
    ],
    "summary": "{{ steps.hello.status }}/{{ steps.parts.each | length }}/"
    "{{ steps.loud.status }}/{{ steps.flaky.status }}/{{ steps.verify.output }}",
}


def problems_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(PlaybookInvalid) as info:
        parse_playbook(data)
    return info.value.problems


def one_step(**step: Any) -> dict[str, Any]:
    return {
        "name": "t",
        "inputs": {"topic": {"type": "string"}},
        "steps": [{"id": "first", "tool": "read_file", "args": {"path": "a"}}, {"id": "s", **step}],
    }


@pytest.fixture
def playbooks_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A playbooks folder of the test's own, holding TOOL_ONLY."""
    folder = tmp_path / "playbooks"
    folder.mkdir()
    monkeypatch.setattr(playbook_schema, "PLAYBOOKS_DIR", folder)
    write_playbook(folder, TOOL_ONLY)
    return folder


def write_playbook(folder: Path, data: dict[str, Any]) -> None:
    (folder / f"{data['name']}.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")


async def make_context(spec: dict[str, Any]) -> RunContext:
    """A real RunContext for a new playbook task (user, agent and task rows, a workspace)."""
    settings = get_settings()
    async with session_scope() as session:
        user = User(email="pb@example.com")
        agent = Agent(name="pb-agent", model="test/model", min_complexity=1, max_complexity=10)
        session.add(user)
        session.add(agent)
        await session.flush()
        assert user.id is not None
        task = Task(
            owner_id=user.id,
            kind="playbook",
            title="playbook run",
            spec=spec,
            agent_id=agent.id,
            status="assigned",
        )
        session.add(task)
        await session.flush()
    assert task.id is not None
    workspace = Workspace.for_task(settings.workspaces_dir, agent.name, task.id)
    workspace.create(title=task.title, description="")
    return RunContext(
        task=task,
        agent=agent,
        workspace=workspace,
        settings=settings,
        limits=Limits.resolve({}, settings),
        worker_id="test",
    )


async def events_of(ctx: RunContext) -> list[TaskEvent]:
    async with session_scope() as session:
        rows = await session.exec(
            select(TaskEvent).where(TaskEvent.task_id == ctx.task_id).order_by(col(TaskEvent.seq))
        )
        return list(rows.all())


# -- the check at submission ------------------------------------------------------------------
def test_shipped_playbooks_validate() -> None:
    # given the playbooks in templates/playbooks and inputs for them
    inputs = {"research_report": {"topic": "bees"}, "python_package": {"package_name": "demo"}}
    assert set(inputs) <= set(playbook_names())
    pending = DESIGN_TOOLS - set(REGISTRY)
    waiting: list[str] = []
    for name in playbook_names():
        # when each is checked
        problems = validate_playbook_request(name, inputs.get(name, {}))
        # then nothing is wrong (but tools other engineers have not registered yet)
        real = [
            p
            for p in problems
            if not any(p["msg"].startswith(f"unknown tool '{t}'") for t in pending)
        ]
        assert real == [], (name, real)
        waiting += [f"{name}: {p['msg'][:40]}" for p in problems if p not in real]
    if waiting:
        pytest.skip(f"tools not registered yet: {waiting}")


def test_listing_gives_input_schemas(playbooks_dir: Path) -> None:
    listed = {p["name"]: p for p in list_playbooks()}
    schema = listed["tool_only"]["inputs"]
    assert schema["required"] == ["name"]
    assert schema["properties"]["count"] == {"type": "integer", "default": 2}
    assert [s["id"] for s in listed["tool_only"]["steps"]][:2] == ["hello", "parts"]


@pytest.mark.parametrize(
    ("step", "loc", "msg"),
    [
        ({"tool": "launch_missiles", "args": {}}, ["tool"], "unknown tool 'launch_missiles'"),
        (
            {"tool": "read_file", "args": {"path": "a", "mode": "rb"}},
            ["args", "mode"],
            "takes no argument",
        ),
        ({"tool": "write_file", "args": {"path": "a"}}, ["args", "content"], "missing required"),
        (
            {"tool": "read_file", "args": {"path": "{{ inputs.topic }"}},
            ["args", "path"],
            "bad template expression",
        ),
        (
            {"tool": "read_file", "args": {"path": "{{ inputs.topic | nosuchfilter }}"}},
            ["args", "path"],
            "bad template expression",
        ),
        (
            {"tool": "read_file", "args": {"path": "{{ secrets.key }}"}},
            ["args", "path"],
            "unknown name(s) secrets",
        ),
        (
            {"tool": "read_file", "args": {"path": "{{ inputs.nope }}"}},
            ["args", "path"],
            "unknown input 'nope'",
        ),
        (
            {"tool": "read_file", "args": {"path": "{{ steps.s.output }}"}},
            ["args", "path"],
            "step 's' is not an earlier step",
        ),
        (
            {"tool": "read_file", "args": {"path": "{{ steps.first.outptu }}"}},
            ["args", "path"],
            "has no field 'outptu'",
        ),
        (
            {"tool": "read_file", "args": {"path": "{{ item }}"}},
            ["args", "path"],
            "unknown name(s) item",
        ),
        (
            {"tool": "read_file", "args": {"path": "a"}, "when": "inputs.topic =="},
            ["when"],
            "bad template expression",
        ),
        ({"prompt": "Hi {{ result }}"}, ["prompt"], "unknown name(s) result"),
        ({"tool": "list_files", "args": {"path": 3}}, ["args", "path"], "must be of type string"),
        (
            {"tool": "read_file", "args": {"path": "a"}, "retries": -1},
            ["retries"],
            "greater than or equal",
        ),
        ({"args": {}}, [], "exactly one of `tool` or `prompt`"),
        (
            {"tool": "read_file", "args": {"path": "a"}, "colour": "red"},
            ["colour"],
            "Extra inputs are not permitted",
        ),
    ],
)
def test_bad_step_is_refused_naming_step_and_field(
    step: dict[str, Any], loc: list[str], msg: str
) -> None:
    # when a playbook with this step is loaded
    problems = problems_of(one_step(**step))
    # then the problem names the step and the field
    assert any(
        p["loc"] == ["playbook", "steps", "s", *loc] and msg in p["msg"] for p in problems
    ), problems


def test_loop_variables_are_known_inside_a_for_each_step() -> None:
    parse_playbook(
        one_step(tool="read_file", for_each="['a', 'b']", args={"path": "{{ item }}{{ index }}"})
    )


@pytest.mark.parametrize(
    ("inputs", "loc", "msg"),
    [
        ({}, ["inputs", "name"], "missing required string"),
        ({"name": 5}, ["inputs", "name"], "must be of type string"),
        ({"name": "x", "count": "3"}, ["inputs", "count"], "must be of type integer"),
        ({"name": "x", "count": True}, ["inputs", "count"], "must be of type integer"),
        ({"name": "x", "colour": "red"}, ["inputs", "colour"], "unknown input"),
    ],
)
def test_bad_inputs_are_refused_at_submission(
    playbooks_dir: Path, inputs: dict[str, Any], loc: list[str], msg: str
) -> None:
    problems = validate_playbook_request("tool_only", inputs)
    assert any(p["loc"] == loc and msg in p["msg"] for p in problems), problems


def test_unknown_or_broken_playbook_is_refused(playbooks_dir: Path) -> None:
    assert validate_playbook_request("../tool_only", {})[0]["loc"] == ["playbook"]
    assert "unknown playbook" in validate_playbook_request("nope", {})[0]["msg"]
    write_playbook(
        playbooks_dir, {**TOOL_ONLY, "name": "broken", "steps": [{"id": "x", "tool": "teleport"}]}
    )
    problems = validate_playbook_request("broken", {"name": "x"})
    assert problems[0]["loc"] == ["playbook", "steps", "x", "tool"]
    assert "broken" not in {p["name"] for p in list_playbooks()}


def test_inputs_are_checked_against_their_pattern(playbooks_dir: Path) -> None:
    # given python_package's input declarations (its tools need not all exist here)
    shipped = yaml.safe_load(
        (playbook_schema.TEMPLATES_DIR / "playbooks/python_package.yaml").read_text()
    )
    write_playbook(
        playbooks_dir,
        {"name": "pkg", "inputs": shipped["inputs"], "steps": [{"id": "a", "tool": "list_files"}]},
    )
    # then names that could inject code are refused
    problems = validate_playbook_request("pkg", {"package_name": "x; rm -rf /"})
    assert [p["loc"] for p in problems] == [["inputs", "package_name"]]
    problems = validate_playbook_request(
        "pkg", {"package_name": "ok", "functions": ["f", "os.system"]}
    )
    assert [p["loc"] for p in problems] == [["inputs", "functions"]]
    assert validate_playbook_request("pkg", {"package_name": "ok", "functions": ["f"]}) == []


# -- running ----------------------------------------------------------------------------------
async def test_tool_only_playbook_runs_with_no_llm(
    env: dict[str, str], db: None, llm: ScriptedLLM, playbooks_dir: Path
) -> None:
    # given a tool-only playbook task
    ctx = await make_context({"playbook": "tool_only", "inputs": {"name": "Ada", "count": 3}})
    # when it runs
    summary = await run_playbook(ctx)
    # then every step ran (or was skipped) without a single model call
    assert summary == "ok/3/skipped/failed/Hello Ada!"
    assert llm.requests == []
    out = ctx.workspace.output
    assert (out / "hello.txt").read_text() == "Hello Ada!"
    assert [(out / f"part{i}.txt").read_text() for i in range(3)] == ["0", "10", "20"]
    assert not (out / "loud.txt").exists()
    events = await events_of(ctx)
    types = [e.type for e in events]
    assert "llm_call" not in types
    phases = [e.data["phase"] for e in events if e.type == "phase"]
    assert phases == ["design", "build", "test"]
    assert types.index("playbook_plan") < types.index("tool_call")
    assert [e.data["id"] for e in events if e.type == "step_skipped"] == ["loud"]
    flaky = [
        e.data
        for e in events
        if e.type == "playbook_step" and e.data["id"] == "flaky" and e.data["status"] != "running"
    ]
    assert [(d["attempt"], d["status"]) for d in flaky] == [
        (1, "failed"),
        (2, "failed"),
        (3, "failed"),
    ]
    saved = await ctx.load_checkpoint()
    assert saved is not None
    assert set(saved.state["results"]) == {s["id"] for s in TOOL_ONLY["steps"]}


async def test_a_redelivered_run_repeats_no_finished_step(
    env: dict[str, str], db: None, playbooks_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a run that dies in the middle of the `parts` loop (the worker crashed)
    ctx = await make_context({"playbook": "tool_only", "inputs": {"name": "Ada", "count": 3}})
    real_call = RunContext.call_tool
    calls: list[str] = []

    async def dying(self: RunContext, name: str, args: dict[str, Any]) -> Any:
        calls.append(str(args.get("path")))
        if args.get("path") == "output/part1.txt":
            raise RuntimeError("worker died")
        return await real_call(self, name, args)

    monkeypatch.setattr(RunContext, "call_tool", dying)
    with pytest.raises(RuntimeError):
        await run_playbook(ctx)
    # when the task is delivered again
    monkeypatch.setattr(RunContext, "call_tool", real_call)
    await run_playbook(ctx)
    # then hello.txt and part0 were written once only
    writes = [
        e.data["args"]["path"]
        for e in await events_of(ctx)
        if e.type == "tool_call" and e.data["tool"] == "write_file"
    ]
    assert writes == [
        "output/hello.txt",
        "output/part0.txt",
        "output/part1.txt",
        "output/part2.txt",
    ]
    # and a third delivery of a finished run does nothing at all
    before = len(await events_of(ctx))
    await run_playbook(ctx)
    assert [e.type for e in (await events_of(ctx))[before:]] == ["playbook_resumed"]


async def test_failed_step_fails_the_run_naming_it(
    env: dict[str, str], db: None, playbooks_dir: Path
) -> None:
    write_playbook(
        playbooks_dir,
        {
            "name": "stops",
            "inputs": {},
            "steps": [
                {"id": "must_read", "tool": "read_file", "args": {"path": "nope.txt"}},
                {"id": "never", "tool": "write_file", "args": {"path": "a", "content": "b"}},
            ],
        },
    )
    ctx = await make_context({"playbook": "stops", "inputs": {}})
    with pytest.raises(AgentFailed, match="step 'must_read' \\(read_file\\) failed"):
        await run_playbook(ctx)
    assert not (ctx.workspace.root / "a").exists()


async def test_hostile_input_is_data_and_internals_are_out_of_reach(
    env: dict[str, str], db: None, playbooks_dir: Path
) -> None:
    # given an input that looks like a template, then a step reaching for internals
    write_playbook(
        playbooks_dir,
        {
            "name": "hostile",
            "inputs": {"text": {"type": "string"}},
            "steps": [
                {
                    "id": "echo",
                    "tool": "write_file",
                    "args": {"path": "output/echo.txt", "content": "{{ inputs.text }}"},
                },
                {
                    "id": "escape",
                    "tool": "write_file",
                    "args": {"path": "x", "content": "{{ inputs.text.__class__.__mro__ }}"},
                },
            ],
        },
    )
    ctx = await make_context({"playbook": "hostile", "inputs": {"text": "{{ 7 * 7 }}"}})
    # when it runs, the sandbox refuses the second step
    with pytest.raises(AgentFailed, match="step 'escape'.*template error.*unsafe"):
        await run_playbook(ctx)
    # and the input was written as it came, never rendered
    assert (ctx.workspace.output / "echo.txt").read_text() == "{{ 7 * 7 }}"


async def test_prompt_step_against_the_scripted_llm(
    env: dict[str, str], db: None, llm: ScriptedLLM, playbooks_dir: Path
) -> None:
    # given a prompt step that must answer JSON (first answer is not), then a tool step using it
    write_playbook(
        playbooks_dir,
        {
            "name": "asks",
            "inputs": {"topic": {"type": "string"}},
            "steps": [
                {
                    "id": "outline",
                    "prompt": "Outline <untrusted>{{ inputs.topic }}</untrusted>",
                    "system": "Be brief.",
                    "parse": "json",
                    "retries": 1,
                },
                {
                    "id": "save",
                    "tool": "write_file",
                    "args": {
                        "path": "output/outline.md",
                        "content": "# {{ steps.outline.json.title }}\n"
                        "{% for s in steps.outline.json.sections %}- {{ s }}\n"
                        "{% endfor %}",
                    },
                },
            ],
            "summary": "Outline of {{ steps.outline.json.title }}",
        },
    )
    llm.script(
        text("Sure! Here it is."),
        text('```json\n{"title": "Bees", "sections": ["Hives", "Honey"]}\n```'),
    )
    ctx = await make_context({"playbook": "asks", "inputs": {"topic": "bees"}})
    # when it runs
    summary = await run_playbook(ctx)
    # then the second answer was parsed and used
    assert summary == "Outline of Bees"
    assert (ctx.workspace.output / "outline.md").read_text() == "# Bees\n- Hives\n- Honey\n"
    assert len(llm.requests) == 2
    messages = llm.requests[0]["messages"]
    assert messages[0]["role"] == "system" and "Be brief." in messages[0]["content"]
    assert "JSON" in messages[0]["content"]
    assert messages[1] == {"role": "user", "content": "Outline <untrusted>bees</untrusted>"}
    events = await events_of(ctx)
    assert [e.data["role"] for e in events if e.type == "llm_call"] == ["playbook", "playbook"]
    attempts = [
        (e.data["attempt"], e.data["status"])
        for e in events
        if e.type == "playbook_step" and e.data["id"] == "outline" and e.data["status"] != "running"
    ]
    assert attempts == [(1, "failed"), (2, "ok")]
    saved = await ctx.load_checkpoint()
    assert saved is not None
    assert json.loads(json.dumps(saved.state["results"]["outline"]["json"]))["title"] == "Bees"


# -- through the API and the runner ------------------------------------------------------------
async def test_playbook_task_over_rest(
    app_client: Any, enqueued: Any, llm: ScriptedLLM, playbooks_dir: Path
) -> None:
    from tests.conftest import run_enqueued

    # given the playbook is listed with its input schema
    listed = (await app_client.get("/templates/playbooks")).json()
    assert "tool_only" in json.dumps(listed)
    # when a submission misses an input, it is refused naming the field
    bad = await app_client.post(
        "/tasks", json={"kind": "playbook", "playbook": "tool_only", "inputs": {"count": "two"}}
    )
    assert bad.status_code == 422, bad.text
    locs = [e["loc"] for e in bad.json()["detail"]]
    assert ["body", "inputs", "name"] in locs and ["body", "inputs", "count"] in locs
    # and a good one runs through the same pipeline, with no model call
    resp = await app_client.post(
        "/tasks",
        json={
            "kind": "playbook",
            "playbook": "tool_only",
            "inputs": {"name": "Ada"},
            "complexity": 1,
        },
    )
    assert resp.status_code == 201, resp.text
    await run_enqueued(enqueued)
    task = (await app_client.get(f"/tasks/{resp.json()['id']}")).json()
    assert task["status"] == "completed", task
    assert task["summary"] == "ok/2/skipped/failed/Hello Ada!"
    assert llm.requests == []


async def test_research_report_with_loopback_search_pages_and_model(
    env: dict[str, str], db: None, llm: ScriptedLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.core.config import reset_settings
    from tests.fakes.search_server import SearchServer
    from tests.fakes.web_server import WebServer

    # given a loopback search engine, a loopback article for every result, and a model
    search, web = SearchServer().start(), WebServer().start()
    monkeypatch.setenv("TASKBENCH_SEARCH_BACKEND", "searxng")
    monkeypatch.setenv("TASKBENCH_SEARXNG_URL", search.url)
    monkeypatch.setenv("TASKBENCH_FETCH_ALLOW_HOSTS", json.dumps([f"127.0.0.1:{web.port}"]))
    reset_settings()
    real_call = RunContext.call_tool

    async def to_loopback(self: RunContext, name: str, args: dict[str, Any]) -> Any:
        if name == "fetch_url":  # the search results name example.org; tests stay offline
            assert args["url"].startswith("https://example.org/")
            args = {"url": web.url("/article")}
        return await real_call(self, name, args)

    monkeypatch.setattr(RunContext, "call_tool", to_loopback)
    llm.script(text("# Jails\n\nNamespaces help [1].\n\n## References\n\n[1] Bubblewrap notes"))
    inputs = {"topic": "bwrap", "max_sources": 2, "render_pdf": False}
    ctx = await make_context({"playbook": "research_report", "inputs": inputs})
    # when it runs
    try:
        summary = await run_playbook(ctx)
    finally:
        search.stop()
        web.stop()
    # then two pages were read, the model saw them as untrusted material, and the report is kept
    assert summary.startswith('Report on "bwrap" written to output/report.md from 2 source(s).')
    prompt = llm.requests[0]["messages"][1]["content"]
    assert "[1] Bubblewrap notes" in prompt and "<untrusted>" in prompt
    assert "Namespaces & limits" in prompt and "do-not-show" not in prompt
    assert (ctx.workspace.output / "report.md").read_text().startswith("# Jails")
    assert "Bubblewrap notes" in (ctx.workspace.research / "sources.md").read_text()
    skipped = [e.data["id"] for e in await events_of(ctx) if e.type == "step_skipped"]
    assert skipped == ["render"]

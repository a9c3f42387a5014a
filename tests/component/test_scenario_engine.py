"""The scenario engine end to end: a real RunContext, a temp database, the scripted LLM."""

from __future__ import annotations

import json
from typing import Any
from xml.etree import ElementTree

import pytest

from app.core.db import session_scope
from app.kinds.scenario.replay import effective, graph_at, transcript
from app.kinds.scenario.report import scenario_report_context
from app.models import TaskMessage
from app.run.errors import AgentFailed
from app.run.scenario.engine import run_scenario
from tests.factories.scenario import (
    THREE,
    CastResponder,
    close_llm_client,
    make_run_context,
    move,
    run_events,
)
from tests.fakes.llm_server import text


@pytest.fixture(autouse=True)
async def _client(db):
    yield
    await close_llm_client()


def _types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


async def test_three_characters_run_end_to_end(llm):
    # given: Ann greets Bob then chats, Bob answers Ann, Cy stays silent
    cast = CastResponder()
    cast.plans["Ann"] = [move("Bob", "Evening, Bob.", "greeting", 0.6, "warm"),
                         move("Bob", "Will you wash up?", "chat", 0.2, "hopeful")]
    cast.plans["Bob"] = [move("ann", "Hi Ann.", "chat", 0.4, "sleepy")]
    llm.responder = cast
    ctx = await make_run_context({"scenario": "three", "definition": THREE, "seed": 7})

    # when
    summary = await run_scenario(ctx)

    # then
    events = await run_events(ctx.task_id)
    types = _types(events)
    assert types.count("narration") == 3
    assert types.count("interaction") == 9
    assert types.count("relationship") == 6  # Ann→Bob and Bob→Ann in each of 3 turns
    analyses = [e["data"] for e in events if e["type"] == "analysis"]
    assert [(a["turn"], a["final"]) for a in analyses] == [(2, False), (3, True)]
    assert types[-1] == "scenario_finished"
    assert "Three at a table" in summary and "Ann and Bob grew closer" in summary
    bob_lines = [e for e in transcript(events) if e.get("actor") == "Bob"]
    assert bob_lines[0]["target"] == "Ann"  # "ann" resolved to the cast member
    final = graph_at(events)
    assert {(e["a"], e["b"]) for e in final["edges"]} == {("Ann", "Bob")}
    assert final["edges"][0]["interactions"] == 6
    nodes = {n["name"]: n for n in final["nodes"]}
    assert nodes["Bob"]["state"] == "sleepy" and nodes["Cy"]["state"] == "curious"
    root = ctx.workspace.root
    assert "Evening, Bob." in (root / "transcript.md").read_text()
    for turn in range(4):
        graph_file = ctx.workspace.output / f"graph_turn_{turn:03d}.json"
        assert json.loads(graph_file.read_text())["turn"] == turn
    assert "Ann and Bob grew closer" in (ctx.workspace.output / "analysis.md").read_text()
    report = await scenario_report_context(ctx.task_id)
    assert [c["name"] for c in report["cast"]] == ["Ann", "Bob", "Cy"]
    assert report["findings"]["summary"] == "Ann and Bob grew closer."
    for svg in (report["graph_svg"], report["ties_chart_svg"]):
        assert ElementTree.fromstring(svg).tag.endswith("svg")
    assert "Ann – Bob" in report["ties_chart_svg"]


async def test_malformed_actor_reply_is_corrected_or_skipped(llm):
    # given: Bob first answers with prose, then corrects; in turn 2 he names a stranger twice
    cast = CastResponder()
    cast.plans["Ann"] = [move("Bob", "Hello Bob.")]
    cast.plans["Bob"] = [text("I think I will say hello."), move("Ann", "Hello Ann."),
                         move("Zed", "Hey Zed."), move("Zed", "Hey Zed!"),
                         move("Ann", "Night, Ann.")]
    llm.responder = cast
    definition = {**THREE, "turns": 3, "analyst": {"enabled": False}}
    ctx = await make_run_context({"scenario": "three", "definition": definition})

    # when
    await run_scenario(ctx)

    # then: the run finished; the invalid replies and the skip are events
    events = await run_events(ctx.task_id)
    invalid = [e["data"] for e in events if e["type"] == "actor_reply_invalid"]
    assert [(i["turn"], i["attempt"]) for i in invalid] == [(1, 1), (2, 1), (2, 2)]
    assert "not a JSON object" in invalid[0]["error"]
    assert "unknown target 'Zed'" in invalid[1]["error"]
    skipped = [e["data"] for e in events if e["type"] == "actor_skipped"]
    assert [(s["turn"], s["actor"]) for s in skipped] == [(2, "Bob")]
    bob = [(e["turn"], e["content"]) for e in transcript(events) if e.get("actor") == "Bob"]
    assert bob == [(1, "Hello Ann."), (3, "Night, Ann.")]
    assert _types(events)[-1] == "scenario_finished"
    # the correction went back to the model with the reason
    corrected = [r for r in llm.requests if len(r["messages"]) == 4]
    assert "could not be used" in corrected[0]["messages"][3]["content"]


async def test_a_run_where_no_actor_reply_is_usable_fails_and_says_why(llm):
    # given: every actor answers with prose, every time
    cast = CastResponder()
    for name in ("Ann", "Bob", "Cy"):
        cast.plans[name] = [text("I would rather describe my feelings in prose.")]
    llm.responder = cast
    definition = {**THREE, "turns": 2, "analyst": {"enabled": False}}
    ctx = await make_run_context({"scenario": "three", "definition": definition})

    # when / then: the run fails, naming the cause, instead of ending `completed`
    with pytest.raises(AgentFailed, match="no actor produced a usable reply: all 6 moves"):
        await run_scenario(ctx)
    events = await run_events(ctx.task_id)
    assert _types(events).count("actor_skipped") == 6
    assert "scenario_finished" not in _types(events)


async def test_a_run_with_some_skipped_moves_is_flagged_degraded(llm):
    # given: Bob never manages a usable reply; Ann and Cy do
    cast = CastResponder()
    cast.plans["Ann"] = [move("Bob", "Hello Bob.")]
    cast.plans["Bob"] = [text("prose only")]
    llm.responder = cast
    definition = {**THREE, "turns": 2, "analyst": {"enabled": False}}
    ctx = await make_run_context({"scenario": "three", "definition": definition})

    # when
    summary = await run_scenario(ctx)

    # then: completed, with the degradation counted and said
    finished = [e["data"] for e in await run_events(ctx.task_id)
                if e["type"] == "scenario_finished"][0]
    assert (finished["moves"], finished["skipped_moves"], finished["degraded"]) == (4, 2, True)
    assert "Degraded: 2 of 6 actor moves were skipped" in summary


async def test_fork_from_turn_two_shares_turns_then_diverges(llm):
    # given: a finished parent run whose lines name the turn
    cast = CastResponder()
    cast.plans["Ann"] = lambda turn, _req: move("Bob", f"parent line {turn}")
    llm.responder = cast
    parent = await make_run_context({"scenario": "three", "definition": THREE})
    await run_scenario(parent)

    # when: a fork from turn 2 with a changed mood for Cy, and new lines
    cast.plans["Ann"] = lambda turn, _req: move("Cy", f"fork line {turn}", "conflict", -0.8)
    child = await make_run_context({
        "scenario": "three", "fork_of": parent.task_id, "from_turn": 2,
        "overrides": {"characters": {"Cy": {"emotional_state": "grumpy"}}}})
    await run_scenario(child)

    # then: turns 1–2 are the parent's, turn 3 differs
    parent_events, child_events = await run_events(parent.task_id), await run_events(child.task_id)

    def lines(events: list[dict[str, Any]], turn: int) -> list[str]:
        return [e.get("content") or e.get("scene") for e in transcript(events)
                if e["turn"] == turn]

    for turn in (1, 2):
        assert lines(child_events, turn) == lines(parent_events, turn)
    assert "fork line 3" in lines(child_events, 3)
    assert "parent line 3" not in lines(child_events, 3)
    started = next(e["data"] for e in child_events if e["type"] == "scenario_started")
    assert started["fork_of"] == parent.task_id and started["from_turn"] == 2
    assert graph_at(child_events, 2)["edges"] == graph_at(parent_events, 2)["edges"]
    assert ("Ann", "Cy") in {(e["a"], e["b"]) for e in graph_at(child_events)["edges"]}
    assert ("Ann", "Cy") not in {(e["a"], e["b"]) for e in graph_at(parent_events)["edges"]}


async def test_user_message_reaches_its_character_next_turn(llm):
    # given: a message to Cy waiting before the run starts
    cast = CastResponder()

    def cy(turn: int, request: dict[str, Any]) -> Any:
        if "A visitor" in request["messages"][1]["content"]:
            return move("user", "Who are you?", "greeting", 0.1, "startled")
        return move(None, action="silent", content="")

    cast.plans["Cy"] = cy
    llm.responder = cast
    ctx = await make_run_context({"scenario": "three", "definition": {
        **THREE, "turns": 2, "analyst": {"enabled": False}}})
    async with session_scope() as session:
        session.add(TaskMessage(task_id=ctx.task_id, target="cy", content="Psst, Cy."))

    # when
    await run_scenario(ctx)

    # then
    events = await run_events(ctx.task_id)
    user_msgs = [e["data"] for e in events if e["type"] == "user_message"]
    assert [(m["turn"], m["target"]) for m in user_msgs] == [(1, "Cy")]
    cy_moves = [e for e in transcript(events) if e.get("actor") == "Cy"]
    assert (cy_moves[0]["target"], cy_moves[0]["content"]) == ("user", "Who are you?")
    assert cy_moves[1]["action"] == "silent"


async def test_resume_after_crash_does_not_repeat_finished_turns(llm):
    # given: a run that died in the middle of turn 2 (the model went away)
    cast = CastResponder()
    cast.plans["Ann"] = lambda turn, _req: move("Bob", f"line {turn}")

    def bob(turn: int, _req: dict[str, Any]) -> Any:
        if turn == 2 and not cast.calls.get("healed"):
            return {"error": 400, "message": "scripted crash"}
        return move("Ann", f"bob {turn}")

    cast.plans["Bob"] = bob
    llm.responder = cast
    spec = {"scenario": "three", "definition": {**THREE, "analyst": {"enabled": False}}}
    ctx = await make_run_context(spec)
    try:
        await run_scenario(ctx)
    except Exception as exc:  # noqa: BLE001 - the runner would record this failure
        assert "model failed" in str(exc)

    # when: the task is delivered again
    cast.calls["healed"] = 1
    await run_scenario(ctx)

    # then: turn 1 once, turn 2 from its restart only, turn 3 once
    events = await run_events(ctx.task_id)
    ann = [e["content"] for e in transcript(events) if e.get("actor") == "Ann"]
    assert ann == ["line 1", "line 2", "line 3"]
    assert "scenario_resumed" in _types(events)
    assert sum(1 for e in effective(events) if e["type"] == "narration") == 3


async def test_a_scenario_runs_report_has_its_scenario_section(llm):
    # given: a finished three-turn run
    from pypdf import PdfReader

    from app.integrations.report import render_task_report

    cast = CastResponder()
    cast.plans["Ann"] = [move("Bob", "Evening, Bob.", "greeting", 0.6, "warm")]
    cast.plans["Bob"] = [move("Ann", "Hi Ann.", "chat", 0.4, "sleepy")]
    llm.responder = cast
    ctx = await make_run_context({"scenario": "three", "definition": THREE, "seed": 7})
    await run_scenario(ctx)

    # when the task's PDF report is rendered
    path = await render_task_report(ctx.task_id)

    # then it carries the run: setting, cast with final moods, both charts, transcript
    text = " ".join(page.extract_text() for page in PdfReader(path).pages)
    assert "Scenario: Three at a table" in text
    assert "Relationships at the end" in text and "Strength and trust over the turns" in text
    assert "sleepy" in text  # Bob's mood at the end, from the cast table
    assert "Evening, Bob." in text  # the transcript
    assert "Ann – Bob" in text  # the ties chart's legend, drawn from the inline SVG


async def test_an_actors_model_call_is_logged_before_its_move_in_one_write(llm):
    # given a sequential run of three actors
    cast = CastResponder()
    cast.plans["Ann"] = [move("Bob", "Evening, Bob.", "greeting", 0.6, "warm")]
    cast.plans["Bob"] = [move("Ann", "Hi Ann.", "chat", 0.4, "sleepy")]
    llm.responder = cast
    ctx = await make_run_context({"scenario": "three", "definition": {**THREE, "turns": 2},
                                  "seed": 3})

    # when it runs
    await run_scenario(ctx)

    # then every move follows the model call that produced it (seq order), and the two were
    # stored by the same write: a crash between two commits can no longer lose the call's usage
    from sqlmodel import col, select

    from app.models import TaskEvent

    async with session_scope() as session:
        rows = (await session.exec(select(TaskEvent).where(TaskEvent.task_id == ctx.task_id)
                                   .order_by(col(TaskEvent.seq)))).all()
    moves = [i for i, e in enumerate(rows) if e.type == "interaction"]
    assert len(moves) == 6
    for i in moves:
        calls = [e for e in rows[:i] if e.type == "llm_call"]
        assert calls and calls[-1].data["role"] == "actor"
        call = calls[-1]
        between = [e.type for e in rows if call.seq < e.seq < rows[i].seq]
        assert "interaction" not in between  # its own call, not an earlier actor's
        assert call.created_at == rows[i].created_at  # one write: the same stored instant

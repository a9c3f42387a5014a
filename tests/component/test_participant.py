"""Participant mode (issue 16): a person speaks in a run to one character or to all; at the
next turn the one addressed answers them, the answer moves its tie with the participant
("user"), and the transcript shows the message, the answer and the tie it moved."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import auth, new_user_key, run_enqueued
from tests.factories.scenario import (
    HARBOUR,
    CastResponder,
    make_ecosystem,
    move,
    run_events,
    start_in_ecosystem,
)


def _visited(request: dict[str, Any]) -> bool:
    return "A visitor" in request["messages"][1]["content"]


async def test_the_character_spoken_to_answers_and_the_tie_moves(app_client, enqueued, llm):
    # given a run of Ann and Bob, and a participant's words to Ann before it plays
    eco = await make_ecosystem(app_client, ["Ann", "Bob"])
    cast = CastResponder()
    asked: list[int] = []

    def ann(turn: int, request: dict[str, Any]) -> Any:
        if not _visited(request):
            return move("Bob", f"Nets, Bob (turn {turn}).")
        asked.append(turn)
        if len(asked) == 1:  # first she turns to Bob instead: the engine asks her again
            return move("Bob", "Bob, who is that?", "chat", 0.1)
        return move("user", "Of course, take two.", "support", 0.9, "generous")

    cast.plans["Ann"] = ann
    cast.plans["Bob"] = lambda turn, _r: move("Ann", f"Aye (turn {turn}).")
    llm.responder = cast
    run = await start_in_ecosystem(app_client, eco["id"])
    said = await app_client.post(f"/scenarios/runs/{run}/messages",
                                 json={"to": "ann", "content": "Can you spare a fish?"})
    assert said.status_code == 201, said.text
    assert said.json()["target"] == "Ann"

    # when the run plays
    await run_enqueued(enqueued)

    # then turn 1 carries the message, Ann's answer to the participant and the tie it moved
    assert (await app_client.get(f"/tasks/{run}")).json()["status"] == "completed"
    entries = (await app_client.get(f"/scenarios/runs/{run}/transcript")).json()["entries"]
    message = next(e for e in entries if e["type"] == "user_message")
    assert (message["turn"], message["target"], message["content"]) == (
        1, "Ann", "Can you spare a fish?")
    answer = next(e for e in entries if e.get("actor") == "Ann" and e["turn"] == 1)
    assert (answer["target"], answer["content"]) == ("user", "Of course, take two.")
    [tie] = answer["ties"]
    assert tie["with"] == "user" and tie["strength"] > 0 and tie["delta"]["strength"] > 0
    assert tie["trust"] > 0.5 and tie["delta"]["trust"] > 0
    # Bob was not spoken to: his move is his own, his tie with Ann moved as usual
    bob = next(e for e in entries if e.get("actor") == "Bob" and e["turn"] == 1)
    assert bob["target"] == "Ann" and [t["with"] for t in bob["ties"]] == ["Ann"]
    # Ann was corrected once for turning away from the participant, then answered
    events = await run_events(run)
    wrong = [e["data"] for e in events if e["type"] == "actor_reply_invalid"]
    assert len(wrong) == 1 and 'answer them this turn, with target "user"' in wrong[0]["error"]
    assert asked == [1, 1]  # and in turn 2 nobody spoke to her
    history = (await app_client.get(f"/scenarios/runs/{run}/relationships/Ann")).json()
    assert ("user", 1) in {(h["other"], h["turn"]) for h in history["history"]}
    # the participant is nobody's tie in the ecosystem, nor a node of the graph
    graph = (await app_client.get(f"/scenarios/runs/{run}/graph")).json()
    assert {n["name"] for n in graph["nodes"]} == {"Ann", "Bob"}
    assert all("user" not in (e["a"], e["b"]) for e in graph["edges"])
    ties = (await app_client.get(f"/ecosystems/{eco['id']}")).json()["relationships"]
    assert [(t["a"], t["b"]) for t in ties] == [("Ann", "Bob")]


async def test_words_to_all_are_answered_by_everyone(app_client, enqueued, llm):
    eco = await make_ecosystem(app_client, ["Ann", "Bob"])
    cast = CastResponder()
    for name in ("Ann", "Bob"):
        cast.plans[name] = lambda turn, request, name=name: (
            move("user", f"{name} says welcome.", "greeting", 0.5) if _visited(request)
            else move(None, action="silent", content=""))
    llm.responder = cast
    run = await start_in_ecosystem(app_client, eco["id"], {**HARBOUR, "turns": 1})
    said = await app_client.post(f"/scenarios/runs/{run}/messages",
                                 json={"to": "all", "content": "Hello, harbour!"})
    assert said.status_code == 201 and said.json()["target"] is None
    await run_enqueued(enqueued)
    entries = (await app_client.get(f"/scenarios/runs/{run}/transcript")).json()["entries"]
    answers = {(e["actor"], e["target"]) for e in entries if e["type"] == "interaction"}
    assert answers == {("Ann", "user"), ("Bob", "user")}
    assert all(e["ties"][0]["with"] == "user" for e in entries if e["type"] == "interaction")
    message = next(e for e in entries if e["type"] == "user_message")
    assert message["target"] is None and "USER → all" in (
        await app_client.get(f"/scenarios/runs/{run}/transcript")).json()["text"]


@pytest.mark.parametrize(("body", "loc"), [
    ({"to": "Zed", "content": "hi"}, ["body", "to"]),
    ({"to": "Ann", "content": ""}, ["body", "content"]),
    ({"to": "Ann", "content": "x" * 4001}, ["body", "content"]),
    ({"content": "hi"}, ["body", "to"]),
])
async def test_a_bad_message_is_a_422_naming_the_field(app_client, body, loc):
    eco = await make_ecosystem(app_client, ["Ann", "Bob"])
    run = await start_in_ecosystem(app_client, eco["id"])
    resp = await app_client.post(f"/scenarios/runs/{run}/messages", json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"][0]["loc"] == loc


async def test_only_the_owner_speaks_and_only_while_it_runs(app_client, enqueued, llm):
    eco = await make_ecosystem(app_client, ["Ann", "Bob"])
    cast = CastResponder()
    cast.plans["Ann"] = [move("Bob", "Hi.")]
    llm.responder = cast
    run = await start_in_ecosystem(app_client, eco["id"])
    other = auth(await new_user_key("someone@example.com"))
    body = {"to": "Ann", "content": "hello"}
    assert (await app_client.post(f"/scenarios/runs/{run}/messages", json=body,
                                  headers=other)).status_code == 404
    agent_task = await app_client.post("/tasks", json={"title": "t", "complexity": 1})
    assert (await app_client.post(f"/scenarios/runs/{agent_task.json()['id']}/messages",
                                  json=body)).status_code == 404
    await app_client.post(f"/tasks/{agent_task.json()['id']}/cancel")
    await run_enqueued(enqueued)
    ended = await app_client.post(f"/scenarios/runs/{run}/messages", json=body)
    assert ended.status_code == 409 and "ended" in ended.json()["detail"]


async def test_a_message_in_the_last_turn_is_refused_or_shown_undelivered(
        app_client, enqueued, llm) -> None:
    import asyncio

    from app.core.db import session_scope
    from app.models import TaskMessage
    from tests.component.test_director_api import Gate

    # given a two-turn run held in Bob's move of its last turn
    eco = await make_ecosystem(app_client, ["Ann", "Bob"])
    gate = Gate("Bob", 2)
    cast = CastResponder()

    def plan(name: str, other: str) -> Any:
        def reply(turn: int, _request: dict[str, Any]) -> Any:
            gate.hold(name, turn)
            return move(other, f"{name} at turn {turn}", "chat", 0.5)
        return reply

    cast.plans["Ann"], cast.plans["Bob"] = plan("Ann", "Bob"), plan("Bob", "Ann")
    llm.responder = cast
    run = await start_in_ecosystem(app_client, eco["id"], HARBOUR)
    worker = asyncio.ensure_future(run_enqueued(enqueued))
    assert await asyncio.to_thread(gate.entered.wait, 60)

    # when a participant speaks now, no turn is left to answer: the API refuses, saying why
    late = await app_client.post(f"/scenarios/runs/{run}/messages",
                                 json={"to": "Ann", "content": "Wait, one more thing!"})
    assert late.status_code == 409, late.text
    assert "last turn" in late.json()["detail"]
    # and one that slipped in as the last turn began (accepted a moment before) ...
    async with session_scope() as session:
        session.add(TaskMessage(task_id=run, author="user:admin", target="Ann",
                                content="Did you hear me?"))
    gate.released.set()
    await asyncio.wait_for(worker, 60)
    assert (await app_client.get(f"/tasks/{run}")).json()["status"] == "completed"

    # ... is in the transcript as not delivered, with why — not silently dropped
    entries = (await app_client.get(f"/scenarios/runs/{run}/transcript")).json()["entries"]
    [message] = [e for e in entries if e["type"] == "user_message"]
    assert message["content"] == "Did you hear me?" and message["target"] == "Ann"
    assert "the run ended before another" in message["undelivered"]
    text = (await app_client.get(f"/scenarios/runs/{run}/transcript")).json()["text"]
    assert "USER → Ann (not delivered: it came during the last turn" in text

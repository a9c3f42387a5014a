"""Living ecosystems (issue 16): rounds run through the sweep under a daily budget, stop when it
is spent, stop on pause and start again on resume; set-up problems are 4xx naming the field."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.ops.sweeper import living_rounds
from tests.factories import run_enqueued
from tests.factories.scenario import CastResponder, move

ROUND = {"name": "harbour-day", "title": "A harbour day", "setting": "The harbour at noon.",
         "turns": 2, "analyst": {"enabled": False},
         "cast": [{"character": "Ann"}, {"character": "Bob"}]}


async def _ecosystem(client: httpx.AsyncClient) -> int:
    ids = []
    for name in ("Ann", "Bob"):
        made = await client.post("/characters", json={"name": name, "persona": f"{name}."})
        ids.append(made.json()["id"])
    eco = await client.post("/ecosystems", json={"name": "Harbour", "characters": ids})
    return int(eco.json()["id"])


def _friendly_cast(llm: Any) -> None:
    cast = CastResponder()
    cast.plans.update({"Ann": [move("Bob", "Fine catch today.", "chat", 0.5)],
                       "Bob": [move("Ann", "Thanks, Ann.", "support", 0.6)]})
    llm.responder = cast


async def _sweep_and_play(client: httpx.AsyncClient, enqueued: Any, eco: int) -> dict[str, Any]:
    """One sweep (settles the ended round, starts a due one), then the worker's side."""
    await living_rounds()
    await living_rounds()  # a round that ended is settled by one sweep, the next started by one
    await run_enqueued(enqueued)
    return (await client.get(f"/ecosystems/{eco}/living")).json()


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_rounds_run_until_the_days_turns_are_spent(app_client, enqueued, llm) -> None:
    # given a living ecosystem allowed 4 turns a day, rounds of 2 turns, no wait between them
    _friendly_cast(llm)
    eco = await _ecosystem(app_client)
    made = await app_client.put(f"/ecosystems/{eco}/living", json={
        "definition": ROUND, "interval_s": 0, "budget": {"turns_per_day": 4}})
    assert made.status_code == 200, made.text
    assert made.json()["status"] == "on" and made.json()["rounds"] == 0
    # when the sweep runs
    first = await _sweep_and_play(app_client, enqueued, eco)
    second = await _sweep_and_play(app_client, enqueued, eco)
    third = await _sweep_and_play(app_client, enqueued, eco)
    # then two rounds ran, each an ordinary scenario task, and the third never started
    assert [first["rounds"], second["rounds"], third["rounds"]] == [1, 2, 2]
    assert third["turns_today"] == 4 and third["round_in_flight"] is None
    assert "today's budget is spent: 4 of 4 turns" in third["stopped"]
    assert third["next_round_at"].startswith(_tomorrow())
    rounds = [first["last_round"], second["last_round"]]
    for task_id in rounds:
        task = (await app_client.get(f"/tasks/{task_id}")).json()
        assert task["kind"] == "scenario" and task["status"] == "completed", task
    # and the rounds wrote the ecosystem's ties back, the latest round's last
    ties = (await app_client.get(f"/ecosystems/{eco}")).json()["relationships"]
    assert ties and ties[0]["run"] == rounds[1]
    # and the characters remember both rounds
    ann = (await app_client.get("/characters")).json()["data"][0]["id"]
    memories = (await app_client.get(f"/characters/{ann}/memories")).json()["data"]
    assert {m["source_run"] for m in memories} == set(rounds)


def _tomorrow() -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) + timedelta(days=1)).date().isoformat()


async def test_a_usd_budget_caps_each_rounds_cost(app_client, enqueued, llm) -> None:
    _friendly_cast(llm)
    eco = await _ecosystem(app_client)
    await app_client.put(f"/ecosystems/{eco}/living", json={
        "definition": ROUND, "interval_s": 0, "budget": {"usd_per_day": 0.5}})
    await living_rounds()
    round_id = (await app_client.get(f"/ecosystems/{eco}/living")).json()["round_in_flight"]
    task = (await app_client.get(f"/tasks/{round_id}")).json()
    assert task["budget"]["max_cost_usd"] == 0.5


async def test_pause_stops_rounds_and_resume_restarts_them(app_client, enqueued, llm) -> None:
    # given a living ecosystem that played one round
    _friendly_cast(llm)
    eco = await _ecosystem(app_client)
    await app_client.put(f"/ecosystems/{eco}/living", json={
        "definition": ROUND, "interval_s": 0, "budget": {"turns_per_day": 100}})
    assert (await _sweep_and_play(app_client, enqueued, eco))["rounds"] == 1
    # when it is paused, sweeps start nothing
    paused = await app_client.post(f"/ecosystems/{eco}/living/pause")
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    for _ in range(3):
        state = await _sweep_and_play(app_client, enqueued, eco)
    assert state["rounds"] == 1 and state["round_in_flight"] is None and not enqueued
    # when it is resumed, the next sweep starts a round again
    resumed = await app_client.post(f"/ecosystems/{eco}/living/resume")
    assert resumed.json()["status"] == "on"
    state = await _sweep_and_play(app_client, enqueued, eco)
    assert state["rounds"] == 2
    # and off is off
    off = await app_client.delete(f"/ecosystems/{eco}/living")
    assert off.json()["status"] == "off"
    assert (await _sweep_and_play(app_client, enqueued, eco))["rounds"] == 2


async def test_living_set_up_problems_are_named(app_client) -> None:
    eco = await _ecosystem(app_client)
    no_budget = await app_client.put(f"/ecosystems/{eco}/living", json={"definition": ROUND})
    assert no_budget.status_code == 422 and no_budget.json()["detail"][0]["loc"] == [
        "body", "budget"]
    empty_budget = await app_client.put(f"/ecosystems/{eco}/living", json={"budget": {}})
    assert empty_budget.status_code == 422
    assert "usd_per_day, turns_per_day" in empty_budget.text
    stranger = {**ROUND, "cast": [{"character": "Ann"}, {"character": "Zed"}]}
    bad_cast = await app_client.put(f"/ecosystems/{eco}/living", json={
        "definition": stranger, "budget": {"turns_per_day": 4}})
    assert bad_cast.status_code == 422
    assert bad_cast.json()["detail"][0]["loc"] == ["body", "definition", "cast", 1, "character"]
    not_living = await app_client.post(f"/ecosystems/{eco}/living/pause")
    assert not_living.status_code == 409 and "PUT" in not_living.json()["detail"]
    assert (await app_client.get("/ecosystems/999/living")).status_code == 404
    # without a definition a round casts every member: an ecosystem of one cannot live
    lonely = await app_client.post("/ecosystems", json={"name": "Lonely", "characters": []})
    refused = await app_client.put(f"/ecosystems/{lonely.json()['id']}/living",
                                   json={"budget": {"turns_per_day": 4}})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["path", "ecosystem_id"]
    # and with one, the default round is valid
    fine = await app_client.put(f"/ecosystems/{eco}/living", json={
        "budget": {"turns_per_day": 4}, "paused": True})
    assert fine.status_code == 200 and fine.json()["status"] == "paused"
    assert [c["character"] for c in fine.json()["definition"]["cast"]] == ["Ann", "Bob"]


async def test_living_mode_is_the_owners(app_client, enqueued, llm) -> None:
    from tests.factories import auth, new_user_key

    # given a user's ecosystem
    mine = auth(await new_user_key("me@example.com"))
    ids = [(await app_client.post("/characters", json={"name": n}, headers=mine)).json()["id"]
           for n in ("Ann", "Bob")]
    eco = (await app_client.post("/ecosystems", json={"name": "Mine", "characters": ids},
                                 headers=mine)).json()["id"]
    # then another user can neither read nor steer its living mode
    other = auth(await new_user_key("other@example.com"))
    for method, path in (("PUT", ""), ("GET", ""), ("POST", "/pause"), ("POST", "/resume"),
                         ("DELETE", "")):
        resp = await app_client.request(method, f"/ecosystems/{eco}/living{path}", headers=other,
                                        json={"budget": {"turns_per_day": 3}}
                                        if method == "PUT" else None)
        assert resp.status_code == 404, (method, path, resp.text)
    # and an admin setting it up casts the owner's characters; rounds run as the owner
    _friendly_cast(llm)
    made = await app_client.put(f"/ecosystems/{eco}/living", json={
        "definition": ROUND, "interval_s": 0, "budget": {"turns_per_day": 2}})
    assert made.status_code == 200, made.text
    await living_rounds()
    round_id = (await app_client.get(f"/ecosystems/{eco}/living")).json()["round_in_flight"]
    assert (await app_client.get(f"/tasks/{round_id}", headers=mine)).status_code == 200


async def test_rounds_that_keep_failing_pause_living_mode(app_client, enqueued, llm) -> None:
    from tests.fakes.llm_server import text

    # given actors whose every reply is unusable (each round fails), and a budget in USD alone
    cast = CastResponder()
    cast.plans["Ann"] = cast.plans["Bob"] = lambda _turn, _request: text("no idea")
    llm.responder = cast
    eco = await _ecosystem(app_client)
    await app_client.put(f"/ecosystems/{eco}/living", json={
        "definition": ROUND, "interval_s": 0, "budget": {"usd_per_day": 5}})
    # when the sweep keeps going
    states = [await _sweep_and_play(app_client, enqueued, eco) for _ in range(5)]
    # then three failed rounds pause it, saying why, and no fourth round starts
    assert [s["rounds"] for s in states] == [1, 2, 3, 3, 3]
    last = states[-1]
    assert last["status"] == "paused" and "3 rounds in a row failed" in last["stopped"]
    assert "no actor produced a usable reply" in last["stopped"]
    task = (await app_client.get(f"/tasks/{last['last_round']}")).json()
    assert task["status"] == "failed"

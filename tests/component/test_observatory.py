"""The observatory's API (issue 16): an ecosystem's graph, stats, mean trust over time and
activity, read from its members, ties and runs; another user's ecosystem is a 404."""

from __future__ import annotations

from tests.factories import auth, new_user_key, run_enqueued
from tests.factories.scenario import CastResponder, make_ecosystem, move, start_in_ecosystem


async def _played(app_client, enqueued, llm) -> tuple[dict, int]:
    """An ecosystem of Ann, Bob and Cy after one two-turn run of Ann and Bob."""
    eco = await make_ecosystem(app_client, ["Ann", "Bob", "Cy"])
    cast = CastResponder()
    cast.plans["Ann"] = [move("Bob", "Morning, Bob.", "greeting", 0.6, "cheerful"),
                         move("Bob", "Help me with the nets?", "collaboration", 0.8, "busy")]
    cast.plans["Bob"] = [move("Ann", "Morning, Ann.", "chat", 0.5, "sleepy")]
    llm.responder = cast
    run = await start_in_ecosystem(app_client, eco["id"])
    await run_enqueued(enqueued)
    assert (await app_client.get(f"/tasks/{run}")).json()["status"] == "completed"
    return eco, run


async def test_the_observatory_shows_graph_stats_trust_and_activity(app_client, enqueued, llm):
    # given an ecosystem where one run has played
    eco, run = await _played(app_client, enqueued, llm)

    # when the observatory is read
    resp = await app_client.get(f"/ecosystems/{eco['id']}/observatory")

    # then the graph has every member, with traits, mood and ids, and the pair that met
    assert resp.status_code == 200, resp.text
    view = resp.json()
    nodes = {n["name"]: n for n in view["graph"]["nodes"]}
    assert set(nodes) == {"Ann", "Bob", "Cy"}
    assert nodes["Ann"]["id"] == eco["characters"][0]["id"]
    assert nodes["Ann"]["traits"]["agreeableness"] == 0.7 and nodes["Ann"]["goals"]
    assert (nodes["Ann"]["state"], nodes["Bob"]["state"]) == ("busy", "sleepy")
    assert nodes["Cy"]["state"] == "" and nodes["Cy"]["strongest_ties"] == []
    [edge] = view["graph"]["edges"]
    assert (edge["a"], edge["b"]) == ("Ann", "Bob") and edge["trust"] > 0.5
    assert nodes["Ann"]["strongest_ties"][0]["other"] == "Bob"
    # the stats count what happened: 2 turns of Ann and Bob speaking (Cy was not cast)
    assert view["stats"] == {"characters": 3, "relationships": 1, "interactions": 4, "runs": 1,
                             "mean_trust": round(edge["trust"], 4)}
    # mean trust rose over the turns (no tie before turn 1: no point for turn 0)
    series = view["trust_series"]
    assert [(p["run"], p["turn"]) for p in series] == [(run, 1), (run, 2)]
    assert 0.5 < series[0]["mean_trust"] < series[1]["mean_trust"] == round(edge["trust"], 4)
    # the feed lists the run and its latest lines, newest first
    assert [(r["task_id"], r["status"], r["turns"]) for r in view["activity"]["runs"]] == [
        (run, "completed", 2)]
    lines = [line["text"] for line in view["activity"]["lines"]]
    assert "Help me with the nets?" in lines[1] and "Morning, Bob." in lines[-2]
    assert view["live_run"] is None


async def test_another_users_ecosystem_is_a_404(app_client, enqueued, llm):
    eco, _run = await _played(app_client, enqueued, llm)
    other = auth(await new_user_key("someone@example.com"))
    resp = await app_client.get(f"/ecosystems/{eco['id']}/observatory", headers=other)
    assert resp.status_code == 404 and "ecosystem" in resp.json()["detail"]
    assert (await app_client.get("/ecosystems/999/observatory")).status_code == 404
    assert (await app_client.get(f"/ecosystems/{eco['id']}/observatory",
                                 params={"runs": 0})).json()["detail"][0]["loc"] == [
        "query", "runs"]


async def test_an_ecosystem_without_runs_shows_its_members(app_client):
    eco = await make_ecosystem(app_client, ["Ann", "Bob"])
    view = (await app_client.get(f"/ecosystems/{eco['id']}/observatory")).json()
    assert [n["name"] for n in view["graph"]["nodes"]] == ["Ann", "Bob"]
    assert view["graph"]["edges"] == [] and view["trust_series"] == []
    assert view["stats"] == {"characters": 2, "relationships": 0, "interactions": 0, "runs": 0,
                             "mean_trust": None}

"""The scenario and template endpoints, through the in-process API and runner."""

from __future__ import annotations

import json
import re

import yaml

from tests.factories import run_enqueued
from tests.factories.scenario import THREE, CastResponder, analysis, move


async def _three_run(app_client, llm, enqueued, **body) -> int:
    """Store the three-character scenario, run it through the pipeline, return the task id."""
    resp = await app_client.post("/templates/scenarios", json=THREE)
    assert resp.status_code in (201, 409), resp.text
    cast = CastResponder()
    cast.plans["Ann"] = [move("Bob", "Evening, Bob.", "greeting", 0.6),
                         move("Cy", "Cy, wash up.", "conflict", -0.5)]
    cast.plans["Bob"] = [move("Ann", "Hi Ann.")]
    llm.responder = cast
    resp = await app_client.post("/scenarios/three/runs", json={"seed": 3, **body})
    assert resp.status_code == 201, resp.text
    task_id = resp.json()["task_id"]
    await run_enqueued(enqueued)
    task = (await app_client.get(f"/tasks/{task_id}")).json()
    assert task["status"] == "completed", task
    return task_id


async def test_list_and_validate(app_client):
    listed = (await app_client.get("/scenarios")).json()
    names = {s["name"] for s in listed["data"]}
    assert {"rerum_novarum", "workplace_negotiation", "small_town_drama"} <= names
    assert all(s["valid"] for s in listed["data"])
    assert "characters" in listed["json_schema"]["properties"]

    bad = {**THREE, "turns": 0, "characters": [*THREE["characters"], {"name": "Ann"}]}
    resp = await app_client.post("/scenarios/validate", content=yaml.safe_dump(bad),
                                 headers={"content-type": "application/yaml"})
    assert resp.status_code == 200
    msgs = [p["msg"] for p in resp.json()["problems"]]
    assert "duplicate character 'Ann'" in msgs and any("turns out of range" in m for m in msgs)
    ok = await app_client.post("/scenarios/validate", json=THREE)
    assert ok.json() == {"valid": True, "problems": [], "turns": 3}


async def test_run_graph_transcript_relationships_export(app_client, llm, enqueued):
    task_id = await _three_run(app_client, llm, enqueued)

    first = (await app_client.get(f"/scenarios/runs/{task_id}/graph", params={"turn": 1})).json()
    assert {(e["a"], e["b"]) for e in first["edges"]} == {("Ann", "Bob")}
    end = (await app_client.get(f"/scenarios/runs/{task_id}/graph")).json()
    assert end["turn"] == 3
    assert {(e["a"], e["b"]) for e in end["edges"]} == {("Ann", "Bob"), ("Ann", "Cy")}
    assert {n["name"] for n in end["nodes"]} == {"Ann", "Bob", "Cy"}
    assert set(end["metrics"]) >= {"degree", "centrality", "communities"}
    missing = await app_client.get(f"/scenarios/runs/{task_id}/graph", params={"turn": 9})
    assert missing.status_code == 404

    transcript = (await app_client.get(f"/scenarios/runs/{task_id}/transcript")).json()
    assert "Evening, Bob." in transcript["text"]
    ties = (await app_client.get(f"/scenarios/runs/{task_id}/relationships/Cy")).json()
    assert [(h["turn"], h["other"]) for h in ties["history"]] == [(2, "Ann"), (3, "Ann")]
    bundle = (await app_client.get(f"/scenarios/runs/{task_id}/export")).json()
    assert len(bundle["graphs"]) == 4 and bundle["analyses"][-1]["final"] is True
    assert json.dumps(bundle)  # one JSON document


async def test_fork_batch_and_one_off_are_child_tasks(app_client, llm, enqueued):
    task_id = await _three_run(app_client, llm, enqueued)

    fork = await app_client.post(f"/scenarios/runs/{task_id}/fork", json={
        "from_turn": 2, "overrides": {"characters": {"Cy": {"emotional_state": "grumpy"}}}})
    assert fork.status_code == 201, fork.text
    batch = await app_client.post(f"/scenarios/runs/{task_id}/batch", json={"seeds": [1, 2]})
    assert batch.status_code == 201, batch.text
    talk = await app_client.post(f"/scenarios/runs/{task_id}/interactions", json={
        "from": "Bob", "to": "Cy", "content": "Sorry about Ann.", "interaction_type": "support",
        "sentiment": 0.8})
    assert talk.status_code == 201, talk.text
    await run_enqueued(enqueued)

    children = [fork.json()["task_id"], *(b["task_id"] for b in batch.json()),
                talk.json()["task_id"]]
    for child in children:
        task = (await app_client.get(f"/tasks/{child}")).json()
        assert (task["status"], task["parent_id"]) == ("completed", task_id), task
    graph = (await app_client.get(f"/scenarios/runs/{children[-1]}/graph")).json()
    assert ("Bob", "Cy") in {(e["a"], e["b"]) for e in graph["edges"]}
    bad = await app_client.post(f"/scenarios/runs/{task_id}/interactions", json={
        "from": "Bob", "to": "Zed", "content": "hi"})
    assert bad.status_code == 422


async def test_templates_crud_and_yaml_round_trip(app_client):
    created = await app_client.post("/templates/scenarios", json=THREE)
    assert created.status_code == 201, created.text
    again = await app_client.post("/templates/scenarios", json=THREE)
    assert again.status_code == 409
    bad = await app_client.post("/templates/scenarios", json={**THREE, "turns": 1000})
    assert bad.status_code == 422

    exported = await app_client.get("/templates/scenarios/three/export")
    assert exported.headers["content-type"].startswith("application/yaml")
    changed = exported.text.replace("Three at a table", "Three at the table")
    imported = await app_client.post("/templates/scenarios/import", params={"overwrite": True},
                                     content=changed, headers={"content-type": "application/yaml"})
    assert imported.status_code == 200, imported.text
    assert imported.json()["body"]["title"] == "Three at the table"

    listed = (await app_client.get("/templates/scenarios")).json()
    assert {"three", "rerum_novarum"} <= {t["name"] for t in listed["data"]}
    assert (await app_client.get("/templates/agents")).json()["count"] >= 1
    assert (await app_client.get("/templates/playbooks")).status_code == 200
    assert (await app_client.delete("/templates/scenarios/three")).status_code == 204
    assert (await app_client.delete("/templates/scenarios/rerum_novarum")).status_code == 404


async def test_batch_outcomes_compare_the_runs(app_client, llm, enqueued):
    # given: five runs (the parent, then four seeds) told apart by the order they run in: Ann
    # collaborates with Bob in runs 0, 2, 4 and quarrels in runs 1, 3; the analyst marks the
    # objective met in runs 0 and 2 only, and the final analysis of run 3 fails
    resp = await app_client.post("/templates/scenarios", json=THREE)
    assert resp.status_code == 201, resp.text
    cast = CastResponder()

    def run_no() -> int:
        return (cast.calls["Ann"] - 1) // 3  # Ann moves once in each of the 3 turns

    def ann(turn: int, _request: dict) -> dict:
        kind, mood = ("conflict", -0.6) if run_no() % 2 else ("collaboration", 0.7)
        return move("Bob", f"run {run_no()}, turn {turn}", kind, mood)

    def analyst(final: bool, request: dict) -> dict:
        run = int(re.search(r"run (\d+), turn", request["messages"][1]["content"]).group(1))
        if final and run == 3:
            return {"error": 400, "message": "scripted failure"}
        return analysis(met=final and run in (0, 2))

    cast.plans["Ann"] = ann
    cast.plans["Bob"] = [move("Ann", "Hi Ann.")]
    cast.analyst = analyst
    llm.responder = cast
    parent = (await app_client.post("/scenarios/three/runs", json={"seed": 3})).json()["task_id"]
    await run_enqueued(enqueued)

    # when: a batch of four more seeds runs and the outcomes are asked for
    batch = await app_client.post(f"/scenarios/runs/{parent}/batch", json={"seeds": [1, 2, 3, 4]})
    assert batch.status_code == 201, batch.text
    await run_enqueued(enqueued)
    resp = await app_client.get(f"/scenarios/runs/{parent}/outcomes")

    # then
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["runs"] == {"total": 5, "completed": 4, "failed": 1, "cancelled": 0,
                           "unfinished": 0, "analysed": 4}
    assert out["objectives"] == [{"objective": "Decide who washes up", "met": 2, "not_met": 2,
                                  "no_verdict": 0, "met_rate": 0.5}], out["objectives"]
    assert out["conflicts"] == {"n": 4, "mean": 0.75, "min": 0.0, "max": 3.0}
    assert out["collaborations"] == {"n": 4, "mean": 2.25, "min": 0.0, "max": 3.0}
    ties = {r["pair"]: r for r in out["relationships"]}
    assert set(ties) == {"Ann – Bob", "Ann – Cy", "Bob – Cy"}
    ann_bob = ties["Ann – Bob"]["strength"]
    assert ann_bob["n"] == 4 and ann_bob["min"] < 0.2 < ann_bob["max"]
    assert ann_bob["min"] <= ann_bob["mean"] <= ann_bob["max"]
    assert ties["Bob – Cy"]["trust"] == {"n": 4, "mean": 0.5, "min": 0.5, "max": 0.5}
    per_run = {r["task_id"]: r for r in out["per_run"]}
    assert per_run[parent]["objectives_met"] == {"Decide who washes up": True}
    assert sorted(r["seed"] for r in out["per_run"]) == [1, 2, 3, 3, 4]
    assert [r["status"] for r in out["per_run"]].count("failed") == 1

"""Persistent characters, ecosystems and memories (issue 16): the API contracts, ownership,
validation naming the field, and memory retrieval (recency + importance + relevance)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.kinds.scenario.memory import lexical_relevance, recall, recency
from tests.factories import auth, new_user_key

ANN = {"name": "Ann", "persona": "A retired ship's cook who hates waste.",
       "traits": {"openness": 0.7, "agreeableness": 0.8, "neuroticism": 0.2},
       "goals": ["keep the kitchen tidy", "befriend Bob"]}


async def test_a_character_is_created_listed_and_read(app_client) -> None:
    made = await app_client.post("/characters", json=ANN)
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["id"] and body["name"] == "Ann"
    assert body["traits"]["openness"] == 0.7 and body["traits"]["extraversion"] == 0.5
    listed = (await app_client.get("/characters")).json()
    assert [c["name"] for c in listed["data"]] == ["Ann"] and listed["count"] == 1
    assert (await app_client.get(f"/characters/{body['id']}")).json()["goals"] == ANN["goals"]
    again = await app_client.post("/characters", json=ANN)
    assert again.status_code == 409 and "Ann" in again.json()["detail"]


@pytest.mark.parametrize(("body", "loc"), [
    ({**ANN, "traits": {"openness": 1.5}}, ["body", "traits", "openness"]),
    ({**ANN, "traits": {"charm": 0.5}}, ["body", "traits", "charm"]),
    ({**ANN, "name": ""}, ["body", "name"]),
    ({**ANN, "name": "<script>"}, ["body", "name"]),
    ({**ANN, "goals": [""]}, ["body", "goals"]),
    ({**ANN, "persona": "x" * 4001}, ["body", "persona"]),
])
async def test_a_bad_character_is_a_422_naming_the_field(app_client, body, loc) -> None:
    resp = await app_client.post("/characters", json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"][0]["loc"] == loc


async def test_characters_and_ecosystems_are_their_owners(app_client) -> None:
    ann = (await app_client.post("/characters", json=ANN)).json()
    other = auth(await new_user_key("someone@example.com"))
    assert (await app_client.get(f"/characters/{ann['id']}", headers=other)).status_code == 404
    assert (await app_client.get("/characters", headers=other)).json()["data"] == []
    stolen = await app_client.post("/ecosystems", json={"name": "Theirs",
                                                        "characters": [ann["id"]]},
                                   headers=other)
    assert stolen.status_code == 422
    assert stolen.json()["detail"][0]["loc"] == ["body", "characters", 0]


async def test_an_ecosystem_gathers_characters(app_client) -> None:
    ann = (await app_client.post("/characters", json=ANN)).json()
    bob = (await app_client.post("/characters", json={**ANN, "name": "Bob"})).json()
    made = await app_client.post("/ecosystems", json={"name": "Harbour",
                                                      "characters": [ann["id"], bob["id"]]})
    assert made.status_code == 201, made.text
    eco = made.json()
    assert [c["name"] for c in eco["characters"]] == ["Ann", "Bob"]
    assert eco["relationships"] == []
    assert (await app_client.get("/ecosystems")).json()["count"] == 1
    assert (await app_client.get(f"/ecosystems/{eco['id']}")).json()["name"] == "Harbour"
    assert (await app_client.get("/ecosystems/999")).status_code == 404


async def test_memories_are_listed_and_recalled_by_situation(app_client) -> None:
    ann = (await app_client.post("/characters", json=ANN)).json()
    for content, importance in [
        ("Bob praised my fish stew at the harbour feast.", 0.6),
        ("The weather was grey all week.", 0.2),
        ("Cy borrowed a pan and never returned it.", 0.7),
    ]:
        made = await app_client.post(f"/characters/{ann['id']}/memories",
                                     json={"content": content, "importance": importance})
        assert made.status_code == 201, made.text
    newest = (await app_client.get(f"/characters/{ann['id']}/memories")).json()
    assert newest["count"] == 3 and newest["data"][0]["content"].startswith("Cy borrowed")
    assert {m["source_run"] for m in newest["data"]} == {None}
    assert await _stored_vector_sizes(ann["id"]) == {384}
    ranked = (await app_client.get(f"/characters/{ann['id']}/memories",
                                   params={"situation": "Bob asks about the stew"})).json()
    assert ranked["data"][0]["content"].startswith("Bob praised")
    assert ranked["relevance"] == "embeddings"  # requirements-models.txt is installed
    assert ranked["data"][0]["score"] >= ranked["data"][1]["score"]
    bad = await app_client.post(f"/characters/{ann['id']}/memories",
                                json={"content": "x", "importance": 2})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "importance"]


def test_retrieval_weighs_recency_importance_and_relevance() -> None:
    now = datetime(2026, 12, 5, tzinfo=UTC)
    memories = [
        ("Bob shouted at me about the broken oar.", 0.9, now - timedelta(days=30), None),
        ("Bob shared his bread with me on the pier.", 0.5, now - timedelta(hours=1), None),
        ("I counted the gulls on the roof.", 0.1, now, None),
    ]
    ranked = recall("Bob offers bread", memories, k=3, now=now, embed=None)
    assert [r.index for r in ranked] == [1, 0, 2]
    assert ranked[0].relevance > 0 and ranked[-1].relevance == 0
    # each term is what the module documents
    assert recency(now - timedelta(hours=24), now) == pytest.approx(0.995 ** 24)
    assert lexical_relevance("Bob shared his bread", "Bob offers bread") == pytest.approx(2 / 3)
    # an embedding model, when there is one, decides relevance instead of shared words
    vectors = {"Bob offers bread": [1.0, 0.0], memories[0][0]: [0.0, 1.0],
               memories[1][0]: [0.9, 0.1], memories[2][0]: [-1.0, 0.0]}
    with_model = recall("Bob offers bread", memories, k=3, now=now,
                        embed=lambda texts: [vectors[t] for t in texts])
    assert with_model[0].index == 1 and with_model[-1].relevance == 0.0


# -- stored characters in runs: cast by reference, memories written and recalled -----------

async def _cast_run(app_client, enqueued, llm, plans, ecosystem=None, title="Harbour night"):  # type: ignore[no-untyped-def]
    from tests.factories import run_enqueued
    from tests.factories.scenario import CastResponder

    cast = CastResponder()
    cast.plans.update(plans)
    llm.responder = cast
    definition = {"name": "harbour", "title": title, "setting": "A quiet harbour at dusk.",
                  "turns": 2, "analyst": {"enabled": False},
                  "cast": [{"character": "Ann", "role": "cook"}, {"character": "Bob"}]}
    body = {"definition": definition, "seed": 1}
    if ecosystem is not None:
        body["ecosystem"] = ecosystem
    made = await app_client.post("/scenarios/runs", json=body)
    assert made.status_code == 201, made.text
    await run_enqueued(enqueued)
    task = (await app_client.get(f"/tasks/{made.json()['task_id']}")).json()
    assert task["status"] == "completed", task
    return task["id"], cast


async def test_a_second_run_remembers_the_first(app_client, enqueued, llm) -> None:
    from tests.factories.scenario import move

    ann = (await app_client.post("/characters", json=ANN)).json()
    bob = (await app_client.post("/characters", json={**ANN, "name": "Bob",
                                                      "persona": "A fisherman."})).json()
    eco = (await app_client.post("/ecosystems", json={"name": "Harbour",
                                                      "characters": [ann["id"], bob["id"]]})
           ).json()
    # given a first run where Bob praises Ann's stew
    first, _ = await _cast_run(app_client, enqueued, llm, {
        "Bob": [move("Ann", "Your fish stew is the best on the coast.", "support", 0.9)],
        "Ann": [move("Bob", "Thank you, Bob.", "chat", 0.6)]}, ecosystem=eco["id"])
    # then Ann remembers it, with the run it came from, and the ecosystem kept the ties
    memories = (await app_client.get(f"/characters/{ann['id']}/memories")).json()["data"]
    assert any("fish stew is the best" in m["content"] and m["source_run"] == first
               for m in memories), [m["content"] for m in memories]
    assert any(m["kind"] == "reflection" for m in memories)
    ties = (await app_client.get(f"/ecosystems/{eco['id']}")).json()["relationships"]
    assert ties and {ties[0]["a"], ties[0]["b"]} == {"Ann", "Bob"} and ties[0]["run"] == first
    assert ties[0]["strength"] > 0

    # when a second run starts in the same ecosystem
    llm.requests.clear()
    second, _ = await _cast_run(app_client, enqueued, llm, {}, ecosystem=eco["id"],
                                title="Harbour morning")
    # then Ann's prompt carries what she remembers of the first run
    ann_prompts = [r["messages"][1]["content"] for r in llm.requests
                   if r["messages"][0]["content"].startswith("You play Ann")]
    assert ann_prompts and all("What you remember from earlier times" in p
                               for p in ann_prompts)
    assert "fish stew is the best on the coast" in ann_prompts[0]
    # and its own memories do not count the first run's twice (one reflection per run)
    again = (await app_client.get(f"/characters/{ann['id']}/memories")).json()["data"]
    assert sum(m["kind"] == "reflection" for m in again) == 2
    assert {m["source_run"] for m in again} == {first, second}
    # and every memory was stored with its vector (no turn embeds old memories again)
    assert await _stored_vector_sizes(ann["id"]) == {384}


async def _stored_vector_sizes(character_id: int) -> set[int]:
    from sqlmodel import select

    from app.core.db import session_scope
    from app.models import Memory

    async with session_scope() as session:
        rows = (await session.exec(select(Memory.embedding)
                                   .where(Memory.character_id == character_id))).all()
    return {len(v) if v else 0 for v in rows}


async def test_casting_a_character_you_do_not_have_is_a_422(app_client) -> None:
    resp = await app_client.post("/scenarios/runs", json={"definition": {
        "name": "x", "title": "x", "setting": "x", "turns": 1,
        "cast": [{"character": "Nobody"}, {"character": "Ann"}]}})
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"][0]["loc"] == ["body", "definition", "cast", 0, "character"]


# -- forks and batches of an ecosystem run carry the stored cast ---------------------------

def _remembered(prompt: str) -> list[str]:
    """The memory lines of an actor's turn prompt."""
    if "What you remember from earlier times" not in prompt:
        return []
    section = prompt.split("What you remember from earlier times", 1)[1].split("\n\n", 1)[0]
    return [line[2:] for line in section.splitlines() if line.startswith("- ")]


async def test_forks_and_batches_carry_the_stored_cast(app_client, enqueued, llm) -> None:
    from tests.factories import run_enqueued
    from tests.factories.scenario import move

    ann = (await app_client.post("/characters", json=ANN)).json()
    bob = (await app_client.post("/characters", json={**ANN, "name": "Bob"})).json()
    eco = (await app_client.post("/ecosystems", json={"name": "Harbour",
                                                      "characters": [ann["id"], bob["id"]]})
           ).json()["id"]
    await app_client.post(f"/characters/{ann['id']}/memories",
                          json={"content": "Bob once mended my oven for free.", "importance": 0.9})
    # given an ecosystem run where Bob praises Ann's stew
    first, _ = await _cast_run(app_client, enqueued, llm, {
        "Bob": [move("Ann", "Your fish stew is the best on the coast.", "support", 0.9)],
        "Ann": [move("Bob", "Thank you, Bob.", "chat", 0.6)]}, ecosystem=eco)
    ties_after_first = (await app_client.get(f"/ecosystems/{eco}")).json()["relationships"]

    # when it is forked from turn 1 (no write_back)
    llm.requests.clear()
    fork = await app_client.post(f"/scenarios/runs/{first}/fork", json={"from_turn": 1})
    assert fork.status_code == 201, fork.text
    await run_enqueued(enqueued)
    assert (await app_client.get(f"/tasks/{fork.json()['task_id']}")).json()["status"] \
        == "completed"
    # then the fork's Ann remembers what came before the run, not the run it re-plays
    prompts = [r["messages"][1]["content"] for r in llm.requests
               if r["messages"][0]["content"].startswith("You play Ann")]
    recalled = [m for p in prompts for m in _remembered(p)]
    assert prompts and "Bob once mended my oven for free." in recalled
    assert not any("fish stew" in m for m in recalled), recalled
    # and it left neither memories nor ties behind
    sources = {m["source_run"] for m in (await app_client.get(
        f"/characters/{ann['id']}/memories", params={"limit": 500})).json()["data"]}
    assert sources == {None, first}
    assert (await app_client.get(f"/ecosystems/{eco}")).json()["relationships"] \
        == ties_after_first

    # when a batch is asked to write back
    batch = await app_client.post(f"/scenarios/runs/{first}/batch",
                                  json={"n": 1, "write_back": True})
    assert batch.status_code == 201, batch.text
    member = batch.json()[0]["task_id"]
    await run_enqueued(enqueued)
    # then its run is remembered and its ties are the ecosystem's
    sources = {m["source_run"] for m in (await app_client.get(
        f"/characters/{ann['id']}/memories", params={"limit": 500})).json()["data"]}
    assert sources == {None, first, member}
    ties = (await app_client.get(f"/ecosystems/{eco}")).json()["relationships"]
    assert ties and ties[0]["run"] == member

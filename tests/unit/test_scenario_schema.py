"""Scenario files: every shipped one validates; validation names every problem at once."""

from __future__ import annotations

import copy

import pytest

from app.kinds.scenario.schema import apply_overrides, validate
from app.run.scenario import load_scenarios, validate_scenario_request
from tests.unit.scenario_fixtures import THREE


def test_every_shipped_scenario_validates():
    found = load_scenarios()
    names = {s["name"] for s in found}
    assert {"rerum_novarum", "workplace_negotiation", "small_town_drama"} <= names
    for s in found:
        assert s["problems"] == [], (s["name"], s["problems"])
    drama = next(s for s in found if s["name"] == "small_town_drama")
    assert len(drama["data"]["characters"]) >= 5


def test_validate_names_every_problem():
    # given: four different mistakes in one file
    data = copy.deepcopy(THREE)
    data["characters"][0]["traits"] = {"openness": 0.5, "charisma": 0.9}
    data["characters"].append({"name": "Bob"})
    data["relationships"].append({"between": ["Ann", "Zoe"]})
    data["turns"] = 500

    # when
    scenario, problems = validate(data)

    # then
    assert scenario is None
    by_loc = {tuple(p["loc"]): p["msg"] for p in problems}
    assert "unknown trait 'charisma'" in by_loc[("characters", 0, "traits", "charisma")]
    assert by_loc[("characters", 3, "name")] == "duplicate character 'Bob'"
    assert "does not exist: 'Zoe'" in by_loc[("relationships", 1, "between", 1)]
    assert "turns out of range: 500" in by_loc[("turns",)]
    assert len(problems) == 4


@pytest.mark.parametrize("turns", [0, -1, 101, "many"])
def test_turns_out_of_range(turns):
    _, problems = validate({**THREE, "turns": turns})
    assert [p["loc"] for p in problems] == [["turns"]]


def test_duration_gives_turns():
    data = {k: v for k, v in THREE.items() if k != "turns"}
    scenario, problems = validate({**data, "duration_minutes": 90, "minutes_per_turn": 30})
    assert problems == [] and scenario is not None and scenario.turn_count == 3
    _, problems = validate(data)
    assert problems[0]["loc"] == ["turns"]


def test_overrides_merge_characters_by_name():
    merged, problems = apply_overrides(THREE, {"turns": 2, "characters": {
        "Bob": {"emotional_state": "angry"}, "Nobody": {}}})
    assert merged["turns"] == 2
    assert merged["characters"][1]["emotional_state"] == "angry"
    assert THREE["characters"][1].get("emotional_state") is None  # the original is untouched
    assert problems == [{"loc": ["overrides", "characters", "Nobody"],
                         "msg": "override for a character that does not exist: 'Nobody'"}]


def test_validate_scenario_request():
    assert validate_scenario_request("rerum_novarum", {"turns": 3}) == []
    assert validate_scenario_request("nope", {}) == [
        {"loc": ["scenario"], "msg": "unknown scenario 'nope'"}]
    problems = validate_scenario_request("rerum_novarum", {"turns": 0})
    assert problems[0]["loc"] == ["overrides", "turns"]
    assert validate_scenario_request("anything", {}, definition=THREE) == []

"""The social graph: edges at turn 1 and at the end, and its metrics."""

from __future__ import annotations

from app.kinds.scenario.graph import build_graph, communities, weighted_centrality
from app.kinds.scenario.relationships import Ledger
from app.kinds.scenario.replay import graph_at

CAST = [{"name": n, "role": "r", "traits": {"openness": 0.5}, "emotional_state": "calm"}
        for n in ("A", "B", "C", "D")]


def _log() -> list[dict]:
    """A made-up event log: A–B at turn 1, C–D and a restarted turn 2."""
    def ev(seq, type, **data):
        return {"seq": seq, "type": type, "data": data}

    start = ev(1, "scenario_started", scenario={"characters": CAST},
               relationships=[{"a": "A", "b": "C", "strength": -0.3, "trust": 0.4,
                               "interactions": 0, "last_interaction": None}])
    rel = {"trust": 0.6, "interactions": 1, "last_interaction": None}
    return [
        start,
        ev(2, "scenario_turn", turn=1, phase="start"),
        ev(3, "interaction", turn=1, actor="A", target="B", emotional_state="glad"),
        ev(4, "relationship", turn=1, a="A", b="B", strength=0.2, **rel),
        ev(5, "scenario_turn", turn=1, phase="end"),
        ev(6, "scenario_turn", turn=2, phase="start"),
        ev(7, "relationship", turn=2, a="B", b="C", strength=0.9, **rel),  # lost attempt
        ev(8, "scenario_turn", turn=2, phase="start"),
        ev(9, "relationship", turn=2, a="C", b="D", strength=0.5, **rel),
        ev(10, "relationship", turn=2, a="A", b="B", strength=0.35, **rel),
        ev(11, "scenario_turn", turn=2, phase="end"),
    ]


def test_graph_at_turn_one_and_at_the_end():
    log = _log()
    first = graph_at(log, 1)
    assert {(e["a"], e["b"]): e["strength"] for e in first["edges"]} == {
        ("A", "B"): 0.2, ("A", "C"): -0.3}
    assert {n["name"]: n["state"] for n in first["nodes"]}["A"] == "glad"
    end = graph_at(log)
    assert end["turn"] == 2
    assert {(e["a"], e["b"]): e["strength"] for e in end["edges"]} == {
        ("A", "B"): 0.35, ("A", "C"): -0.3, ("C", "D"): 0.5}  # the lost B–C attempt is gone
    assert graph_at(log, 0)["edges"] == [{"a": "A", "b": "C", "strength": -0.3, "trust": 0.4,
                                         "interactions": 0, "last_interaction": None}]


def test_metrics():
    ledger = Ledger()
    for a, b, s in (("A", "B", 0.5), ("B", "C", 0.4), ("C", "D", -0.6)):
        rel = ledger.get(a, b)
        rel.strength = s
        ledger.set(rel)
    graph = build_graph(cast=CAST, states={}, ledger=ledger, turn=3)
    m = graph["metrics"]
    assert m["degree"] == {"A": 1, "B": 2, "C": 2, "D": 1}
    assert m["centrality"] == {"A": round(0.5 / 3, 4), "B": 0.3, "C": round(1.0 / 3, 4),
                               "D": 0.2}
    assert m["most_central"] == "C"
    assert m["communities"] == [["A", "B", "C"], ["D"]]  # the hostile tie does not bind


def test_communities_split_on_two_cliques():
    edges = [{"a": a, "b": b, "strength": 0.8} for a, b in
             (("A", "B"), ("A", "C"), ("B", "C"), ("D", "E"), ("D", "F"), ("E", "F"))]
    edges.append({"a": "C", "b": "D", "strength": 0.1})
    names = list("ABCDEF")
    labels = communities(names, edges)
    assert len({labels[n] for n in "ABC"}) == 1 and len({labels[n] for n in "DEF"}) == 1
    assert labels["A"] != labels["D"]
    assert weighted_centrality(names, [])["A"] == 0.0


def test_communities_do_not_depend_on_the_order_ties_are_listed():
    # given two loose groups bridged by a weak tie, listed in two different orders
    ties = [("A", "B", 0.6), ("B", "C", 0.5), ("A", "C", 0.4), ("D", "E", 0.7), ("E", "F", 0.6),
            ("D", "F", 0.5), ("C", "D", 0.05), ("A", "F", -0.9)]
    edges = [{"a": a, "b": b, "strength": s} for a, b, s in ties]
    names = list("FEDCBA")
    # when communities are computed for each order, several times
    results = [communities(names, order) for order in (edges, edges[::-1]) for _ in range(3)]
    # then every run finds the same two groups, named by their first members
    assert all(r == results[0] for r in results)
    assert results[0] == {"A": "A", "B": "A", "C": "A", "D": "D", "E": "D", "F": "D"}

"""The social graph of a run at one turn, and its simple metrics (pure Python).

    nodes   one per character: role, traits, emotional state, degree, weighted centrality,
            community
    edges   one per pair that has a starting relationship or has interacted: strength, trust,
            interactions, last interaction

Metrics, for n characters:
    degree(v)              number of edges at v
    centrality(v)          Σ |strength(v, u)| over v's edges / (n − 1): how much of v's
                           possible tie intensity is realised (hostile ties count too)
    community(v)           weighted label propagation over positive ties (strength > 0):
                           every node starts with its own label and, in name order, takes the
                           label with the largest summed strength among its neighbours (ties go
                           to the smallest label) until nothing changes — deterministic, so the
                           same run always yields the same groups
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from app.kinds.scenario.relationships import Ledger

MAX_PROPAGATION_ROUNDS = 50


def build_graph(
    *, cast: list[dict[str, Any]], states: dict[str, str], ledger: Ledger, turn: int
) -> dict[str, Any]:
    """The graph at `turn` as a JSON-ready dict: nodes, edges and metrics."""
    names = [c["name"] for c in cast]
    edges = [r.as_dict() for _, r in sorted(ledger.rels.items())
             if r.a in names and r.b in names]
    degree = degrees(names, edges)
    centrality = weighted_centrality(names, edges)
    community = communities(names, edges)
    nodes = [
        {
            "name": c["name"], "role": c.get("role", ""), "traits": c.get("traits", {}),
            "state": states.get(c["name"], c.get("emotional_state", "")),
            "degree": degree[c["name"]], "centrality": centrality[c["name"]],
            "community": community[c["name"]],
        }
        for c in cast
    ]
    groups: dict[str, list[str]] = defaultdict(list)
    for name in names:
        groups[community[name]].append(name)
    return {
        "turn": turn,
        "nodes": nodes,
        "edges": edges,
        "metrics": {
            "degree": degree,
            "centrality": centrality,
            "communities": sorted(groups.values(), key=lambda g: (-len(g), g)),
            "most_central": max(names, key=lambda n: (centrality[n], -names.index(n)))
            if names else None,
        },
    }


def degrees(names: list[str], edges: list[dict[str, Any]]) -> dict[str, int]:
    out = dict.fromkeys(names, 0)
    for e in edges:
        out[e["a"]] += 1
        out[e["b"]] += 1
    return out


def weighted_centrality(names: list[str], edges: list[dict[str, Any]]) -> dict[str, float]:
    total = dict.fromkeys(names, 0.0)
    for e in edges:
        w = abs(float(e["strength"]))
        total[e["a"]] += w
        total[e["b"]] += w
    denom = max(len(names) - 1, 1)
    return {n: round(total[n] / denom, 4) for n in names}


def communities(names: list[str], edges: list[dict[str, Any]]) -> dict[str, str]:
    """name → community label (the alphabetically first member's name, after propagation)."""
    neighbours: dict[str, dict[str, float]] = {n: {} for n in names}
    for e in edges:
        w = float(e["strength"])
        if w > 0:
            neighbours[e["a"]][e["b"]] = w
            neighbours[e["b"]][e["a"]] = w
    label = {n: n for n in names}
    order = sorted(names)
    for _ in range(MAX_PROPAGATION_ROUNDS):
        changed = False
        for node in order:
            if not neighbours[node]:
                continue
            weight: dict[str, float] = defaultdict(float)
            for other, w in neighbours[node].items():
                weight[label[other]] += w
            best = min(weight, key=lambda lab: (-weight[lab], lab))
            if weight[best] > weight.get(label[node], 0.0) and best != label[node]:
                label[node] = best
                changed = True
        if not changed:
            break
    # Name each group by its first member so labels read as "the group around X".
    first: dict[str, str] = {}
    for node in order:
        first.setdefault(label[node], node)
    return {n: first[label[n]] for n in names}

"""The social graph of a run at one turn, and its metrics (computed with networkx).

    nodes   one per character: role, traits, emotional state, degree, weighted centrality,
            community
    edges   one per pair that has a starting relationship or has interacted: strength, trust,
            interactions, last interaction

Metrics, for n characters:
    degree(v)              number of edges at v
    centrality(v)          Σ |strength(v, u)| over v's edges / (n − 1): how much of v's
                           possible tie intensity is realised (hostile ties count too)
    community(v)           Louvain modularity communities over positive ties (strength > 0,
                           weighted by strength; hostile ties never bind), with a fixed seed so
                           the same run always yields the same groups; a group is named by its
                           alphabetically first member
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import networkx as nx

from app.kinds.scenario.relationships import Ledger

COMMUNITY_SEED = 0  # Louvain visits nodes in a random order; a fixed seed makes it repeatable


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


def _graph(names: list[str], edges: list[dict[str, Any]], *, positive_only: bool) -> nx.Graph:
    import networkx as nx  # loaded when a scenario needs it, not by every worker at import

    graph = nx.Graph()
    graph.add_nodes_from(names)
    for e in edges:
        strength = float(e["strength"])
        if not positive_only or strength > 0:
            graph.add_edge(e["a"], e["b"], weight=strength, intensity=abs(strength))
    return graph


def degrees(names: list[str], edges: list[dict[str, Any]]) -> dict[str, int]:
    graph = _graph(names, edges, positive_only=False)
    return {n: int(graph.degree(n)) for n in names}


def weighted_centrality(names: list[str], edges: list[dict[str, Any]]) -> dict[str, float]:
    graph = _graph(names, edges, positive_only=False)
    denom = max(len(names) - 1, 1)
    return {n: round(float(graph.degree(n, weight="intensity")) / denom, 4) for n in names}


def communities(names: list[str], edges: list[dict[str, Any]]) -> dict[str, str]:
    """name → community label (the alphabetically first member's name)."""
    graph = _graph(names, edges, positive_only=True)
    from networkx.algorithms.community import louvain_communities

    groups = louvain_communities(graph, weight="weight", seed=COMMUNITY_SEED)
    return {n: min(group) for group in groups for n in group}

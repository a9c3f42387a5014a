"""What the observatory shows of an ecosystem: read from its members, its ties and the event
logs of its runs (nothing is stored for it).

    observe(name, members, ties, runs)
    ├── graph          nodes: the members (traits, persona, goals, emotional state in their
    │                  latest run, degree, centrality, community, strongest ties);
    │                  edges: the ties between members — the stored ones, or, while a run of
    │                  the ecosystem is playing, that run's ties as of its last event (`live`)
    ├── stats          characters, relationships (edges), interactions (non-silent ones in the
    │                  runs read), runs, mean trust now (over the edges)
    ├── trust_series   mean trust over the member pairs that have a tie, at the start and after
    │                  each finished turn of each run, oldest run first
    └── activity       the runs, newest first, and the latest lines of their transcripts

A run is (summary, events): summary {task_id, title, status, created_at}, events as
app.kinds.scenario.replay reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import fmean
from typing import Any

from app.kinds.scenario import replay
from app.kinds.scenario.graph import build_graph
from app.kinds.scenario.relationships import Ledger, Relationship
from app.models import TERMINAL_VALUES

STRONGEST = 3  # ties shown per character
FEED_LINES = 20
# what the view reads of a run's log (the big ones — graphs, analyses, model calls — it does
# without: the ties and the trust after each turn follow from the relationship events)
EVENT_TYPES = ("scenario_started", "scenario_turn", "narration", "user_message", "interaction",
               "relationship")

Run = tuple[dict[str, Any], list[replay.Event]]


@dataclass
class Played:
    """What the view takes from one run's log: its state at the end, the mean trust of member
    ties after each turn, and its non-silent interactions."""

    state: replay.RunState
    trust: list[dict[str, Any]]
    interactions: int


def played(task_id: int, events: list[replay.Event], names: set[str]) -> Played:
    """One pass over the run's log (what replay.state_at would say, without its transcript)."""
    events = replay.effective(events)
    start = replay.started(events)
    ledger = Ledger.load(start.get("relationships", []))
    state = replay.RunState(states={c["name"]: c.get("emotional_state", "")
                                    for c in start["scenario"]["characters"]}, ledger=ledger)
    points = [_point(task_id, 0, ledger, names)]
    interactions = 0
    for ev in events:
        data = ev["data"]
        if ev["type"] == "relationship":
            ledger.set(Relationship.from_dict(data))
        elif ev["type"] == "interaction":
            interactions += data.get("action") != "silent"
            if data.get("emotional_state"):
                state.states[data["actor"]] = data["emotional_state"]
        elif ev["type"] == "scenario_turn" and data.get("phase") == "end":
            state.turn = max(state.turn, data.get("turn", 0))
            points.append(_point(task_id, data.get("turn", 0), ledger, names))
    return Played(state=state, interactions=interactions,
                  trust=[p for p in points if p is not None])


def _point(task_id: int, turn: int, ledger: Ledger, names: set[str]) -> dict[str, Any] | None:
    trust = [r.trust for r in ledger.rels.values() if {r.a, r.b} <= names]
    if not trust:
        return None
    return {"run": task_id, "turn": turn, "mean_trust": round(fmean(trust), 4),
            "pairs": len(trust)}


def observe(*, name: str, members: list[dict[str, Any]], ties: list[dict[str, Any]],
            runs: list[Run]) -> dict[str, Any]:
    """The observatory's view; `runs` newest first, as the feed lists them."""
    names = {m["name"] for m in members}
    started = [(s, events) for s, events in runs if _has_start(events)]
    facts = {s["task_id"]: played(s["task_id"], events, names) for s, events in started}
    live = next((s["task_id"] for s, _e in started if s["status"] not in TERMINAL_VALUES), None)
    ledger = Ledger.load([t for t in ties if {t.get("a"), t.get("b")} <= names])
    states: dict[str, str] = {}
    for summary, _events in reversed(started):  # oldest first: the newest run's mood wins
        states.update({n: s for n, s in facts[summary["task_id"]].state.states.items()
                       if n in names})
    if live is not None:
        rels = facts[live].state.ledger.rels
        ledger = Ledger({k: r for k, r in rels.items() if {r.a, r.b} <= names})
    graph = build_graph(cast=members, states=states, ledger=ledger, turn=0)
    by_name = {m["name"]: m for m in members}
    for node in graph["nodes"]:
        member = by_name[node["name"]]
        node.update(id=member.get("id"), persona=member.get("persona", ""),
                    goals=member.get("goals", []),
                    strongest_ties=strongest(node["name"], graph["edges"]))
    trust_now = [float(e["trust"]) for e in graph["edges"]]
    return {
        "name": name,
        "live_run": live,
        "graph": {"nodes": graph["nodes"], "edges": graph["edges"],
                  "metrics": graph["metrics"]},
        "stats": {"characters": len(members), "relationships": len(graph["edges"]),
                  "interactions": sum(f.interactions for f in facts.values()),
                  "runs": len(runs),
                  "mean_trust": round(fmean(trust_now), 4) if trust_now else None},
        "trust_series": [p for s, _e in reversed(started) for p in facts[s["task_id"]].trust],
        "activity": {"runs": [{**s, "turns": facts[s["task_id"]].state.turn
                               if s["task_id"] in facts else 0,
                               "interactions": facts[s["task_id"]].interactions
                               if s["task_id"] in facts else 0} for s, _e in runs],
                     "lines": feed(started)},
    }


def strongest(name: str, edges: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A character's ties with the most intensity (|strength|), strongest first."""
    mine = [e for e in edges if name in (e["a"], e["b"])]
    mine.sort(key=lambda e: (-abs(float(e["strength"])), e["b"] if e["a"] == name else e["a"]))
    return [{"other": e["b"] if e["a"] == name else e["a"], "strength": e["strength"],
             "trust": e["trust"], "interactions": e.get("interactions", 0)}
            for e in mine[:STRONGEST]]


def feed(runs: list[Run]) -> list[dict[str, Any]]:
    """The latest transcript lines of the runs (newest run first, newest line first)."""
    lines: list[dict[str, Any]] = []
    for summary, events in runs:
        for entry in reversed(replay.transcript(events)):
            if len(lines) >= FEED_LINES:
                return lines
            line = replay.transcript_line({"type": entry["type"], "data": entry})
            if line:
                lines.append({"task_id": summary["task_id"], "turn": entry.get("turn"),
                              "type": entry["type"], "text": line})
    return lines


def _has_start(events: list[replay.Event]) -> bool:
    return any(e["type"] == "scenario_started" for e in events)

"""What the PDF report needs from a scenario run, derived from its event log."""

from __future__ import annotations

from typing import Any

from app.core.db import session_scope
from app.kinds.scenario import replay
from app.kinds.scenario.svg import graph_svg, ties_chart_svg

CHART_PAIRS = 6


def ties_series(events: list[replay.Event], turns: int
                ) -> dict[str, list[tuple[int, float, float]]]:
    """Strength and trust per turn of the busiest pairs (by interactions at the end)."""
    final = replay.graph_at(events)
    busiest = sorted(final["edges"], key=lambda e: (-e["interactions"], e["a"], e["b"]))
    pairs = [(e["a"], e["b"]) for e in busiest[:CHART_PAIRS]]
    series: dict[str, list[tuple[int, float, float]]] = {f"{a} – {b}": [] for a, b in pairs}
    for turn in range(turns + 1):
        edges = {(e["a"], e["b"]): e for e in replay.graph_at(events, turn)["edges"]}
        for a, b in pairs:
            e = edges.get((a, b))
            if e is not None:
                series[f"{a} – {b}"].append((turn, float(e["strength"]), float(e["trust"])))
    return series


async def scenario_report_context(task_id: int) -> dict[str, Any]:
    """Cast, setting, transcript, graph SVG, ties chart SVG and the analyst's findings."""
    async with session_scope() as session:
        events = await replay.load_events(session, task_id)
    start = replay.started(replay.effective(events))
    scenario = start["scenario"]
    state = replay.state_at(events)
    graph = replay.graph_at(events)
    analyses = replay.analyses(events)
    final = next((a for a in reversed(analyses) if a.get("final")), None)
    return {
        "title": scenario["title"],
        "setting": scenario["setting"],
        "mood": scenario.get("mood", ""),
        "objectives": scenario.get("objectives", []),
        "cast": [{"name": c["name"], "role": c.get("role", ""), "persona": c.get("persona", ""),
                  "goals": c.get("goals", []), "traits": c.get("traits", {}),
                  "state": state.states.get(c["name"], "")} for c in scenario["characters"]],
        "turns": state.turn,
        "fork_of": start.get("fork_of"),
        "from_turn": start.get("from_turn"),
        "transcript": replay.transcript(events),
        "transcript_lines": state.lines,
        "graph": graph,
        "graph_svg": graph_svg(graph),
        "ties_chart_svg": ties_chart_svg(ties_series(events, state.turn), state.turn),
        "findings": (final or {}).get("findings", {}),
        "analyses": analyses,
    }

"""The analyst (every K turns and at the end) and the files a run leaves in its workspace.

    transcript.md                   the dialogue so far, rewritten after every turn
    output/graph_turn_NNN.json      the social graph after turn NNN (000: the starting ties)
    output/analysis.md              every analysis of the run, newest last
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.core.prompts import render_prompt
from app.kinds.scenario.graph import build_graph
from app.kinds.scenario.relationships import Ledger
from app.kinds.scenario.replies import parse_analysis
from app.run.scenario.turn import Run

TRANSCRIPT_CHARS = 60_000


def current_graph(run: Run) -> dict[str, Any]:
    cast = [c.model_dump() for c in run.scenario.characters]
    return build_graph(cast=cast, states=run.state.states, ledger=run.state.ledger,
                       turn=run.state.turn)


def analysis_due(run: Run, turn: int) -> bool:
    """Interim analyses every K turns (not on the last turn: the final one covers it)."""
    k = run.scenario.analyst.every_k_turns
    return bool(run.scenario.analyst.enabled and k and turn % k == 0 and turn < run.total)


def _changes(run: Run, start: Ledger) -> list[dict[str, Any]]:
    out = []
    for key, rel in sorted(run.state.ledger.rels.items()):
        first = start.rels.get(key)
        out.append({**rel.as_dict(), "start_strength": first.strength if first else 0.0,
                    "start_trust": first.trust if first else 0.5})
    return out


def _transcript_tail(lines: list[str]) -> list[str]:
    """The latest lines that fit the analyst's budget (older lines are the least relevant)."""
    out: list[str] = []
    size = 0
    for line in reversed(lines):
        size += len(line) + 1
        if size > TRANSCRIPT_CHARS:
            out.append("[… earlier turns omitted …]")
            break
        out.append(line)
    return list(reversed(out))


async def analyse(run: Run, turn: int, *, final: bool, start: Ledger) -> dict[str, Any]:
    """Ask the analyst about the run so far; record an `analysis` event and return it."""
    graph = current_graph(run)
    messages = [
        {"role": "system", "content": render_prompt("scenario_analyst", part="system",
                                                    scenario=run.scenario)},
        {"role": "user", "content": render_prompt(
            "scenario_analyst", part="turn", final=final, turn=turn, total=run.total,
            changes=_changes(run, start), centrality=graph["metrics"]["centrality"],
            communities=graph["metrics"]["communities"],
            transcript=_transcript_tail(run.state.lines))},
    ]
    completion = await run.ctx.chat(messages, role="analyst")
    data = {"turn": turn, "final": final, "findings": parse_analysis(completion.content),
            "metrics": graph["metrics"]}
    await run.ctx.emit("analysis", data)
    return data


# -- workspace files ------------------------------------------------------------------------

def write_turn_files(run: Run, graph: dict[str, Any]) -> None:
    """transcript.md and this turn's graph file (rewritten whole: a resumed turn overwrites)."""
    root = Path(run.ctx.workspace.root)
    out = Path(run.ctx.workspace.output)
    out.mkdir(parents=True, exist_ok=True)
    body = "\n\n".join(run.state.lines)
    (root / "transcript.md").write_text(
        f"# {run.scenario.title}\n\n{run.scenario.setting.strip()}\n\n## Transcript\n\n{body}\n",
        encoding="utf-8")
    (out / f"graph_turn_{graph['turn']:03d}.json").write_text(
        json.dumps(graph, indent=1), encoding="utf-8")


def write_analysis_file(run: Run, analyses: list[dict[str, Any]]) -> None:
    parts = [f"# Analysis — {run.scenario.title}\n"]
    for a in analyses:
        f = a["findings"]
        label = "Final analysis" if a["final"] else f"Interim analysis after turn {a['turn']}"
        parts.append(f"## {label}\n\n{f.get('summary', '')}\n")
        for key in ("relationship_changes", "alliances", "conflicts", "central",
                    "turning_points", "objectives"):
            items = f.get(key) or []
            if items:
                parts.append(f"### {key.replace('_', ' ').capitalize()}\n")
                parts += [f"- {_item(i)}" for i in items]
                parts.append("")
    Path(run.ctx.workspace.output).mkdir(parents=True, exist_ok=True)
    (Path(run.ctx.workspace.output) / "analysis.md").write_text("\n".join(parts), encoding="utf-8")


def _item(item: Any) -> str:
    if isinstance(item, dict):
        return "; ".join(f"{k}: {v}" for k, v in item.items())
    return str(item)

"""Outcome distributions over several runs of one scenario (a batch: the parent and its seeds).

Each run is read from its own event log, like everything else about a run:

    run_outcome(task, events)   one run: status, seed, turns, objectives met (the final
                                `analysis` event's objectives[].met), final ties, conflicts…
    aggregate(outcomes)         across runs: how often each objective was met, and mean/min/max
                                of final strength and trust per pair and of the counts

Only completed runs enter the distributions (a failed run stopped somewhere in the middle);
`runs` still lists every run with its status.
"""

from __future__ import annotations

from statistics import fmean
from typing import Any

from pydantic import BaseModel, Field

from app.kinds.scenario import replay
from app.kinds.scenario.relationships import Ledger, pair_key
from app.kinds.scenario.replies import match_name


class Dist(BaseModel):
    """A distribution over the completed runs (mean/min/max are None when n is 0)."""

    n: int
    mean: float | None
    min: float | None
    max: float | None


class ObjectiveOutcome(BaseModel):
    objective: str
    met: int = Field(description="completed runs whose final analysis marked it met")
    not_met: int = Field(description="completed runs whose final analysis marked it not met")
    no_verdict: int = Field(description="completed runs without a verdict on it")
    met_rate: float | None = Field(description="met / (met + not_met)")


class PairOutcome(BaseModel):
    pair: str = Field(description='"A – B", names sorted')
    strength: Dist
    trust: Dist


class RunCounts(BaseModel):
    total: int
    completed: int
    failed: int
    cancelled: int
    unfinished: int = Field(description="pending or still running")
    analysed: int = Field(description="completed runs with a final analysis")


class RunOutcome(BaseModel):
    task_id: int
    status: str
    seed: int | None = None
    started: bool
    turns: int | None = None
    objectives_met: dict[str, bool] = Field(default_factory=dict)
    conflicts: int | None = None
    collaborations: int | None = None
    interactions: int | None = None


class Outcomes(BaseModel):
    """How a batch turned out: per objective, per pair and per count, across its runs."""

    task_id: int = Field(description="the batch parent")
    runs: RunCounts
    objectives: list[ObjectiveOutcome]
    relationships: list[PairOutcome] = Field(description="final tie of every pair of the cast")
    conflicts: Dist = Field(description="interactions of type conflict per run")
    collaborations: Dist = Field(description="interactions of type collaboration per run")
    interactions: Dist = Field(description="non-silent interactions per run")
    turns: Dist
    per_run: list[RunOutcome]


CONFLICT_TYPES = ("conflict",)
COLLABORATION_TYPES = ("collaboration",)
_TRUE = {"true", "yes", "met", "1"}
_FALSE = {"false", "no", "not met", "unmet", "0"}


def verdict(value: Any) -> bool | None:
    """The analyst's `met` as a bool (it is model output: "yes", 1 and True all count)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        return True if word in _TRUE else False if word in _FALSE else None
    return None


def objectives_met(findings: dict[str, Any], objectives: list[str]) -> dict[str, bool]:
    """objective → met, for the scenario's objectives the analyst gave a verdict on."""
    out: dict[str, bool] = {}
    items = findings.get("objectives")
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("objective"), str):
            continue
        name = match_name(item["objective"], objectives) or item["objective"].strip()[:200]
        met = verdict(item.get("met"))
        if met is not None and name:
            out.setdefault(name, met)
    return out


def run_outcome(task: Any, events: list[replay.Event]) -> dict[str, Any]:
    """One run's outcome from its log (a run that never started has only its status)."""
    row: dict[str, Any] = {"task_id": task.id, "status": task.status,
                           "seed": (task.spec or {}).get("seed")}
    try:
        start = replay.started(replay.effective(events))
    except LookupError:
        return {**row, "started": False}
    state = replay.state_at(events)
    final = next((a for a in reversed(replay.analyses(events)) if a.get("final")), None)
    objectives = list(start["scenario"].get("objectives") or [])
    types = [e["data"].get("interaction_type") for e in replay.effective(events)
             if e["type"] == "interaction" and e["data"].get("action") != "silent"]
    cast = [c["name"] for c in start["scenario"]["characters"]]
    return {
        **row, "started": True, "seed": start.get("seed", row["seed"]), "turns": state.turn,
        "objectives": objectives,
        "objectives_met": objectives_met(final["findings"], objectives) if final else {},
        "final_analysis": final is not None,
        "ties": _ties(state.ledger, cast),
        "conflicts": sum(t in CONFLICT_TYPES for t in types),
        "collaborations": sum(t in COLLABORATION_TYPES for t in types),
        "interactions": len(types),
    }


def _ties(ledger: Ledger, cast: list[str]) -> dict[str, dict[str, float]]:
    """Every pair of the cast at the end, "A – B" → strength, trust (untouched pairs neutral)."""
    out = {}
    for i, a in enumerate(cast):
        for b in cast[i + 1:]:
            x, y = pair_key(a, b)
            rel = ledger.get(x, y)
            out[f"{x} – {y}"] = {"strength": rel.strength, "trust": rel.trust}
    return out


def stats(values: list[float]) -> dict[str, float | int | None]:
    """n, mean, min and max (None for an empty list), rounded for reading."""
    if not values:
        return {"n": 0, "mean": None, "min": None, "max": None}
    return {"n": len(values), "mean": round(fmean(values), 6), "min": round(min(values), 6),
            "max": round(max(values), 6)}


def aggregate(outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    """The distributions across runs; see the module docstring for what counts."""
    done = [o for o in outcomes if o["status"] == "completed" and o.get("started")]
    statuses: dict[str, int] = {}
    for o in outcomes:
        statuses[o["status"]] = statuses.get(o["status"], 0) + 1
    # The scenario's objectives first, then any other the analyst named, each once.
    names = list(dict.fromkeys(n for o in done for n in [*o["objectives"], *o["objectives_met"]]))
    objectives = []
    for name in names:
        verdicts = [o["objectives_met"][name] for o in done if name in o["objectives_met"]]
        met = sum(verdicts)
        objectives.append({"objective": name, "met": met, "not_met": len(verdicts) - met,
                           "no_verdict": len(done) - len(verdicts),
                           "met_rate": round(met / len(verdicts), 4) if verdicts else None})
    pairs = sorted({p for o in done for p in o["ties"]})
    return {
        "runs": {"total": len(outcomes), "completed": statuses.get("completed", 0),
                 "failed": statuses.get("failed", 0), "cancelled": statuses.get("cancelled", 0),
                 "unfinished": sum(v for k, v in statuses.items()
                                   if k not in ("completed", "failed", "cancelled")),
                 "analysed": sum(o["final_analysis"] for o in done)},
        "objectives": objectives,
        "relationships": [
            {"pair": p,
             "strength": stats([o["ties"][p]["strength"] for o in done if p in o["ties"]]),
             "trust": stats([o["ties"][p]["trust"] for o in done if p in o["ties"]])}
            for p in pairs],
        "conflicts": stats([float(o["conflicts"]) for o in done]),
        "collaborations": stats([float(o["collaborations"]) for o in done]),
        "interactions": stats([float(o["interactions"]) for o in done]),
        "turns": stats([float(o["turns"]) for o in done]),
    }

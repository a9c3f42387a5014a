"""Everything about a run, derived from its event log: state at a turn, transcript, graph.

The event log is the only record of a run (the API, forks and the report all read it here).
A turn that was started again — the worker died mid-turn and the task was redelivered — is
taken from its last start only, so a half-played attempt never shows up twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.kinds.scenario.graph import build_graph
from app.kinds.scenario.relationships import Ledger, Relationship
from app.models import TaskEvent

Event = dict[str, Any]  # {"seq", "type", "data"}
TURN_TYPES = frozenset({"scenario_turn", "narration", "interaction", "relationship",
                        "user_message", "actor_reply_invalid", "actor_skipped", "graph",
                        "analysis"})


async def load_events(session: AsyncSession, task_id: int,
                      types: tuple[str, ...] | None = None) -> list[Event]:
    """The whole log of a task as plain dicts, in order (only `types` when given). The columns
    only, no ORM objects: about a third of the time for a long log."""
    stmt = (select(TaskEvent.seq, TaskEvent.type, TaskEvent.data)
            .where(TaskEvent.task_id == task_id).order_by(col(TaskEvent.seq)))
    if types is not None:
        stmt = stmt.where(col(TaskEvent.type).in_(types))
    rows = (await session.exec(stmt)).all()
    return [{"seq": seq, "type": type_, "data": data or {}} for seq, type_, data in rows]


def effective(events: list[Event]) -> list[Event]:
    """The log without superseded attempts: a restart drops what the earlier attempt wrote."""
    out: list[Event] = []
    latest = -1  # the highest turn of a turn event kept so far: nothing to drop below it
    for ev in events:
        data = ev["data"]
        if ev["type"] == "scenario_started":
            out, latest = [ev], -1
            continue
        if ev["type"] == "scenario_turn" and data.get("phase") == "start" and not data.get(
                "inherited_from"):
            turn = data.get("turn", 0)
            if latest >= turn:
                out = [e for e in out if not (e["type"] in TURN_TYPES
                                              and e["data"].get("turn", 0) >= turn)]
                latest = max((e["data"].get("turn", 0) for e in out
                              if e["type"] in TURN_TYPES), default=-1)
        if ev["type"] in TURN_TYPES:
            latest = max(latest, data.get("turn", 0))
        out.append(ev)
    return out


@dataclass
class RunState:
    """What a run knows after a turn: moods, ties, the transcript so far."""

    turn: int = 0
    states: dict[str, str] = field(default_factory=dict)
    ledger: Ledger = field(default_factory=Ledger)
    lines: list[str] = field(default_factory=list)


def started(events: list[Event]) -> dict[str, Any]:
    """The data of the run's `scenario_started` event (scenario, cast, starting ties)."""
    for ev in events:
        if ev["type"] == "scenario_started":
            return dict(ev["data"])
    raise LookupError("this task has no scenario_started event: not a scenario run")


def state_at(events: list[Event], turn: int | None = None) -> RunState:
    """The run's state at the end of `turn` (None: as far as the log goes)."""
    events = effective(events)
    start = started(events)
    state = RunState(
        states={c["name"]: c.get("emotional_state", "") for c in start["scenario"]["characters"]},
        ledger=Ledger.load(start.get("relationships", [])),
    )
    for ev in events:
        data = ev["data"]
        t = data.get("turn", 0)
        if turn is not None and t > turn:
            continue
        if ev["type"] == "scenario_turn" and data.get("phase") == "end":
            state.turn = max(state.turn, t)
        elif ev["type"] == "relationship":
            state.ledger.set(Relationship.from_dict(data))
        elif ev["type"] == "interaction" and data.get("emotional_state"):
            state.states[data["actor"]] = data["emotional_state"]
        line = transcript_line(ev)
        if line:
            state.lines.append(line)
    return state


def transcript_line(ev: Event) -> str | None:
    """One line of the transcript for an event, or None for events that are not dialogue."""
    d = ev["data"]
    if ev["type"] == "narration":
        return f"[turn {d.get('turn')}] NARRATOR: {d.get('scene', '')}"
    if ev["type"] == "user_message":
        note = f" (not delivered: {d['undelivered']})" if d.get("undelivered") else ""
        return (f"[turn {d.get('turn')}] USER → {d.get('target') or 'all'}{note}: "
                f"{d.get('content', '')}")
    if ev["type"] == "interaction":
        if d.get("action") == "silent":
            return f"[turn {d.get('turn')}] {d.get('actor')} stays silent."
        verb = "does" if d.get("action") == "act" else f"({d.get('interaction_type')})"
        return (f"[turn {d.get('turn')}] {d.get('actor')} → {d.get('target')} {verb}: "
                f"{d.get('content', '')}")
    return None


def last_turn_begun(events: list[Event]) -> bool:
    """Whether the run has begun its last turn: a participant's message would find no next
    turn to be answered in."""
    return any(e["type"] == "scenario_turn" and e["data"].get("phase") == "start"
               and e["data"].get("turn") == e["data"].get("of") for e in events)


def transcript(events: list[Event]) -> list[dict[str, Any]]:
    """The dialogue as entries: narration, user messages and interactions, in order; each
    interaction carries the ties it moved (`ties`: with whom, strength and trust after it, and
    by how much each changed), from the `relationship` events written with it."""
    out: list[dict[str, Any]] = []
    last: dict[str, Any] | None = None
    for ev in effective(events):
        d = ev["data"]
        if ev["type"] in ("narration", "user_message", "interaction"):
            out.append({"seq": ev["seq"], "type": ev["type"], **d})
            last = out[-1] if ev["type"] == "interaction" else None
        elif ev["type"] == "relationship" and last is not None and last.get("actor") in (
                d.get("a"), d.get("b")) and last.get("turn") == d.get("turn"):
            other = d["b"] if d.get("a") == last["actor"] else d.get("a")
            last.setdefault("ties", []).append({
                "with": other, "strength": d.get("strength"), "trust": d.get("trust"),
                "delta": d.get("delta") or {}})
    return out


def graph_at(events: list[Event], turn: int | None = None) -> dict[str, Any]:
    """The social graph at the end of `turn` (0: the starting ties; None: the latest)."""
    state = state_at(events, turn)
    cast = started(effective(events))["scenario"]["characters"]
    return build_graph(cast=cast, states=state.states, ledger=state.ledger,
                       turn=state.turn if turn is None else turn)


def relationships_over_time(events: list[Event], name: str) -> list[dict[str, Any]]:
    """Every change to one character's ties: turn, other, strength, trust, count, by whom."""
    events = effective(events)
    start = started(events)
    out = [{"turn": 0, "other": r["b"] if r["a"] == name else r["a"], **_tie(r)}
           for r in start.get("relationships", []) if name in (r["a"], r["b"])]
    for ev in events:
        d = ev["data"]
        if ev["type"] == "relationship" and name in (d.get("a"), d.get("b")):
            other = d["b"] if d["a"] == name else d["a"]
            out.append({"turn": d.get("turn", 0), "other": other, **_tie(d)})
    return out


def _tie(d: dict[str, Any]) -> dict[str, Any]:
    return {"strength": d.get("strength"), "trust": d.get("trust"),
            "interactions": d.get("interactions", 0),
            "last_interaction": d.get("last_interaction")}


def analyses(events: list[Event]) -> list[dict[str, Any]]:
    return [ev["data"] for ev in effective(events) if ev["type"] == "analysis"]

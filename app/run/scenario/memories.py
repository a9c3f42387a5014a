"""Stored characters remember: memories read before a run's actors act, written when it ends.

    load_bank(stored, task_id)      every memory of the run's stored characters from before it
    (turn.recall_for picks the few an actor is reminded of each turn from that bank)
    remember_run(run, …)            when a run ends: one observation per interaction a stored
                                    character took part in, one reflection per character, and
                                    the ecosystem's ties written back — once per run (a
                                    redelivered run finds its memories written and stops); a
                                    fork or batch member only with `write_back` (engine.py)
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select

from app.core.db import session_scope
from app.kinds.scenario.memory import Remembered, embed_many
from app.models import Ecosystem, Memory, utcnow
from app.run.scenario.turn import Run


async def load_bank(stored: dict[str, int], task_id: int, not_from: int | None = None
                    ) -> dict[str, list[Remembered]]:
    """What the stored cast remembers, except of this run and of `not_from` (a fork's parent:
    its characters must not remember the turns the fork plays again differently)."""
    if not stored:
        return {}
    by_id = {cid: name for name, cid in stored.items()}
    excluded = [task_id] if not_from is None else [task_id, not_from]
    async with session_scope() as session:
        rows = (await session.exec(select(Memory).where(
            col(Memory.character_id).in_(list(by_id)),
            (col(Memory.task_id).is_(None)) | col(Memory.task_id).not_in(excluded))
            .order_by(col(Memory.created_at).desc()).limit(5000))).all()
    await _embed_missing([m for m in rows if not m.embedding])
    bank: dict[str, list[Remembered]] = {name: [] for name in stored}
    for m in rows:
        bank[by_id[m.character_id]].append((m.content, m.importance, m.created_at, m.embedding))
    return bank


async def _embed_missing(rows: list[Memory]) -> None:
    """Give memories stored without a vector (written before a model was installed) theirs,
    stored, so no turn embeds them again."""
    if not rows:
        return
    vectors = await asyncio.to_thread(embed_many, [m.content for m in rows])
    if vectors[0] is None:
        return  # no model installed: relevance stays lexical
    async with session_scope() as session:
        for m, vector in zip(rows, vectors, strict=True):
            m.embedding = vector
            await session.execute(update(Memory).where(col(Memory.id) == m.id)
                                  .values(embedding=vector))


def _observations(run: Run, name: str, events: list[dict[str, Any]]) -> list[tuple[str, float]]:
    out = []
    title = run.scenario.title
    for ev in events:
        if ev["type"] != "interaction":
            continue
        d = ev["data"]
        if d.get("action") == "silent" or name not in (d.get("actor"), d.get("target")):
            continue
        feeling = float(d.get("sentiment") or 0.0)
        if d.get("actor") == name:
            text = f"In \"{title}\" (turn {d.get('turn')}) I told {d.get('target')}: " \
                   f"{str(d.get('content', ''))[:400]}"
        else:
            text = f"In \"{title}\" (turn {d.get('turn')}) {d.get('actor')} told me: " \
                   f"{str(d.get('content', ''))[:400]}"
        out.append((text, round(min(1.0, 0.3 + abs(feeling) * 0.7), 3)))
    return out[:200]


def _reflection(run: Run, name: str) -> str:
    ties = sorted(run.state.ledger.of(name), key=lambda r: -r.strength)
    close = ", ".join(f"{r.b if r.a == name else r.a} ({r.strength:+.2f})" for r in ties[:2])
    mood = run.state.states.get(name) or "unchanged"
    return (f"After \"{run.scenario.title}\" ({run.state.turn} turns) I felt {mood}."
            + (f" Closest to me: {close}." if close else ""))[:2000]


async def remember_run(run: Run, task_id: int, stored: dict[str, int],
                       events: list[dict[str, Any]], ecosystem_id: int | None) -> int:
    """Write what the run's stored characters remember of it; returns how many memories."""
    if not stored:
        return 0
    async with session_scope() as session:
        if (await session.exec(select(Memory.id).where(Memory.task_id == task_id)
                               .limit(1))).first() is not None:
            return 0  # this run's memories were written by an earlier delivery
        rows = [Memory(character_id=character_id, task_id=task_id, kind=kind, content=text,
                       importance=importance)
                for name, character_id in stored.items()
                for kind, text, importance in [
                    *(("observation", t, i) for t, i in _observations(run, name, events)),
                    ("reflection", _reflection(run, name), 0.8)]]
        vectors = await asyncio.to_thread(embed_many, [m.content for m in rows])
        for m, vector in zip(rows, vectors, strict=True):
            m.embedding = vector
            session.add(m)
        written = len(rows)
        if ecosystem_id is not None:
            members = set(stored)
            ties = [{"a": r.a, "b": r.b, "strength": round(r.strength, 4),
                     "trust": round(r.trust, 4), "interactions": r.interactions,
                     "run": task_id}
                    for r in run.state.ledger.rels.values() if {r.a, r.b} <= members]
            await session.execute(update(Ecosystem).where(col(Ecosystem.id) == ecosystem_id)
                                  .values(relationships=ties, updated_at=utcnow()))
    return written

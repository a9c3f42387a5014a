"""One turn of a scenario: inbox → narrator → each actor in order → relationships → events.

With `turn_order: simultaneous` every actor moves from the state at the start of the turn (after
the narration), so their model calls run at once; the moves are then applied in a fixed order.

An actor's unusable reply (not JSON, wrong shape, unknown target) is an `actor_reply_invalid`
event and goes back to the model once with the reason; a second bad reply skips that actor for
the turn (`actor_skipped`). Neither ever stops the run.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from app.core.prompts import render_prompt
from app.kinds.scenario.memory import recall
from app.kinds.scenario.relationships import INTERACTION_TYPES, pair_key
from app.kinds.scenario.replay import RunState, transcript_line
from app.kinds.scenario.replies import (
    ActorMove,
    ReplyError,
    parse_actor,
    parse_narration,
)
from app.kinds.scenario.schema import Scenario

RECENT_LINES = 12
MAX_ATTEMPTS = 2
T = TypeVar("T")


@dataclass
class Run:
    """A scenario run in progress: its task context, definition, seed and current state."""

    ctx: Any  # RunContext (kept loose so tests and benchmarks can pass a lighter double)
    scenario: Scenario
    seed: int
    state: RunState
    carried_inbox: list[dict[str, Any]] = field(default_factory=list)
    # For a distributed scenario: the moves workers computed for a simultaneous turn (given by
    # the engine: distributed.moves_from_workers, which builds on this module)
    remote_moves: Callable[[Run, int, list[str]], Awaitable[Moves]] | None = None
    # stored characters' memories from earlier runs (name → [(content, importance, when,
    # embedding)]), read once when the run starts (app.run.scenario.memories)
    memory_bank: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.scenario.turn_count


async def emit_many(ctx: Any, events: list[tuple[str, dict[str, Any]]]) -> None:
    """Append several events in one transaction (one actor's move and its ties land together),
    through the step record: with the usage of the model call that produced them, after it."""
    if not events:
        return
    for type_, data in events:
        ctx.record(type_, data)
    await ctx.flush()


async def take_inbox(run: Run, turn: int) -> list[dict[str, Any]]:
    """Messages from a participant stepping in, addressed to one character (by name, any case)
    or to all (no target, or "all"); the characters addressed answer them this turn."""
    inbox = list(run.carried_inbox)
    run.carried_inbox = []
    by_name = {n.lower(): n for n in run.scenario.cast}
    for msg in await run.ctx.take_messages():
        target = (msg.target or "").strip()
        everyone = target.lower() in ("", "all")
        known = None if everyone else by_name.get(target.lower())
        inbox.append({"turn": turn, "author": msg.author, "content": msg.content[:4000],
                      "target": known,
                      "unknown_target": target if not everyone and not known else None})
    return inbox


async def play_turn(run: Run, turn: int) -> None:
    """Play turn `turn` to the end and record it; the caller checkpoints afterwards."""
    ctx = run.ctx
    await ctx.emit("scenario_turn", {"turn": turn, "phase": "start", "of": run.total})
    inbox = await take_inbox(run, turn)
    if inbox:
        await emit_many(ctx, [("user_message", m) for m in inbox])
        run.state.lines += [transcript_line({"type": "user_message", "data": m}) or ""
                            for m in inbox]
    narration = await narrate(run, turn, inbox)
    order, scene = actor_order(run, turn, narration.get("order") or []), narration.get("scene", "")
    if run.scenario.turn_order == "simultaneous":
        # Every move is asked from the same state, then applied in `order`: the result does not
        # depend on which call (or which worker) finished first.
        moves = await simultaneous_moves(run, turn, order, scene=scene, inbox=inbox)
        events = []
        for name in order:
            move, extra = moves[name]
            if move is not None:
                events += move_events(run, name, move, turn, extra)
        await emit_many(ctx, events)  # one transaction for the whole turn's moves
    else:
        for name in order:
            move = await actor_move(run, name, turn, scene=scene, inbox=inbox_for(inbox, name))
            if move is not None:
                await apply_move(run, name, move, turn)
    await ctx.emit("scenario_turn", {"turn": turn, "phase": "end", "of": run.total})
    run.state.turn = turn


def inbox_for(inbox: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The user messages one actor sees: those to it by name and those to everyone."""
    return [m for m in inbox if m["target"] in (None, name)]


Moves = dict[str, tuple[ActorMove | None, dict[str, Any] | None]]


async def simultaneous_moves(run: Run, turn: int, order: list[str], *, scene: str,
                             inbox: list[dict[str, Any]]) -> Moves:
    """Every actor's move of a simultaneous turn: from workers when distributed, the rest here
    concurrently (each call budget-checked by ctx.chat); name → (move, extra event fields)."""
    moves: Moves = {}
    if run.scenario.distributed and run.remote_moves is not None:
        moves = await run.remote_moves(run, turn, order)
    here = [n for n in order if n not in moves]
    extra = {"computed_by": "runner"} if run.scenario.distributed else None
    asked = await gather_all([actor_move(run, n, turn, scene=scene, inbox=inbox_for(inbox, n))
                              for n in here])
    moves.update({name: (move, extra) for name, move in zip(here, asked, strict=True)})
    return moves


async def gather_all(coros: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Run coroutines concurrently; on the first failure cancel the rest and raise it as is."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def actor_order(run: Run, turn: int, narrator_order: list[str]) -> list[str]:
    """Who acts in which order: the narrator's (when it decides), else fixed or seeded shuffle."""
    cast = run.scenario.cast
    if run.scenario.narrator.decides_order and narrator_order:
        return [*narrator_order, *(n for n in cast if n not in narrator_order)]
    if run.scenario.turn_order == "shuffled":
        order = list(cast)
        # Seeded per turn, so a resumed or forked run replays the same order.
        random.Random(f"{run.seed}:{turn}").shuffle(order)
        return order
    return list(cast)


async def narrate(run: Run, turn: int, inbox: list[dict[str, Any]]) -> dict[str, Any]:
    """The narrator's scene for this turn (an empty scene when the narrator is off)."""
    if not run.scenario.narrator.enabled:
        return {"scene": "", "changes": "", "order": []}
    sc = run.scenario
    messages = [
        {"role": "system", "content": render_prompt("scenario_narrator", part="system",
                                                    scenario=sc)},
        {"role": "user", "content": render_prompt(
            "scenario_narrator", part="turn", turn=turn, total=run.total, cast=sc.characters,
            states=run.state.states, recent=run.state.lines[-RECENT_LINES:], inbox=inbox)},
    ]
    completion = await run.ctx.chat(messages, role="narrator")
    narration = parse_narration(completion.content, sc.cast)
    data = {"turn": turn, **narration}
    await run.ctx.emit("narration", data)
    run.state.lines.append(transcript_line({"type": "narration", "data": data}) or "")
    return narration


def actor_messages(run: Run, name: str, turn: int, *, scene: str,
                   inbox: list[dict[str, Any]], respond_to: dict[str, Any] | None
                   ) -> list[dict[str, Any]]:
    """The system and turn prompts for one actor."""
    sc = run.scenario
    me = sc.character(name)
    assert me is not None
    common = {"scenario": sc, "me": me, "others": [n for n in sc.cast if n != name],
              "can_answer_user": bool(inbox), "types": INTERACTION_TYPES}
    ties = []
    for rel in run.state.ledger.of(name):
        other = rel.b if rel.a == name else rel.a
        ties.append({"other": other, "strength": rel.strength, "trust": rel.trust,
                     "interactions": rel.interactions})
    turn_prompt = render_prompt(
        "scenario_actor", part="turn", turn=turn, total=run.total,
        state=run.state.states.get(name, ""), scene=scene, ties=ties,
        memories=recall_for(run, name, scene),
        recent=run.state.lines[-RECENT_LINES:], inbox=inbox, respond_to=respond_to, **common)
    return [{"role": "system", "content": render_prompt("scenario_actor", part="system", **common)},
            {"role": "user", "content": turn_prompt}]


RECALLED = 5  # memories an actor is reminded of per turn


def recall_for(run: Run, name: str, scene: str) -> list[str]:
    """What a stored character is reminded of this turn, from earlier runs (recency,
    importance and relevance to the scene and the last lines: app.kinds.scenario.memory)."""
    memories = run.memory_bank.get(name) or []
    if not memories:
        return []
    situation = " ".join([scene, *run.state.lines[-4:]])
    return [memories[r.index][0] for r in recall(situation, memories, k=RECALLED)]


async def actor_move(run: Run, name: str, turn: int, *, scene: str,
                     inbox: list[dict[str, Any]], respond_to: dict[str, Any] | None = None
                     ) -> ActorMove | None:
    """Ask one actor for its move; correct once on a bad reply, then skip with an event."""
    ctx, sc = run.ctx, run.scenario
    me = sc.character(name)
    assert me is not None
    messages = actor_messages(run, name, turn, scene=scene, inbox=inbox, respond_to=respond_to)
    models = [me.model, *ctx.models()] if me.model else None
    for attempt in range(1, MAX_ATTEMPTS + 1):
        completion = await ctx.chat(messages, models=models, role="actor")
        try:
            return parse_actor(completion.content, me=name, cast=sc.cast,
                               can_answer_user=bool(inbox), must_answer_user=bool(inbox))
        except ReplyError as exc:
            await ctx.emit("actor_reply_invalid", {
                "turn": turn, "actor": name, "attempt": attempt, "error": str(exc),
                "reply": completion.content[:2000]})
            messages = [*messages, {"role": "assistant", "content": completion.content[:4000]},
                        {"role": "user", "content": render_prompt(
                            "scenario_actor", part="correction", error=str(exc),
                            others=[n for n in sc.cast if n != name],
                            can_answer_user=bool(inbox))}]
    await ctx.emit("actor_skipped", {"turn": turn, "actor": name,
                                     "reason": f"no usable reply after {MAX_ATTEMPTS} attempts"})
    return None


async def apply_move(run: Run, name: str, move: ActorMove, turn: int,
                     extra: dict[str, Any] | None = None) -> None:
    """Record a move: the interaction, each touched relationship, the actor's new mood."""
    await emit_many(run.ctx, move_events(run, name, move, turn, extra))


def move_events(run: Run, name: str, move: ActorMove, turn: int,
                extra: dict[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Apply a move to the run's state; the events that record it (for the caller to write)."""
    state = run.state
    if move.emotional_state:
        state.states[name] = move.emotional_state
    interaction = {"turn": turn, "actor": name, **move.model_dump(), **(extra or {})}
    events: list[tuple[str, dict[str, Any]]] = [("interaction", interaction)]
    if move.action != "silent" and move.target is not None:
        # a reply to the participant ("user") moves the character's tie with them too
        others = [n for n in run.scenario.cast if n != name] if move.target == "all" else [
            move.target]
        for other in others:
            before = state.ledger.get(name, other)
            rel = state.ledger.record(actor=name, target=str(other), sentiment=move.sentiment,
                                      interaction_type=move.interaction_type, turn=turn)
            a, b = pair_key(name, str(other))
            events.append(("relationship", {
                "turn": turn, **rel.as_dict(), "a": a, "b": b,
                "delta": {"strength": round(rel.strength - before.strength, 6),
                          "trust": round(rel.trust - before.trust, 6)}}))
    state.lines.append(transcript_line({"type": "interaction", "data": interaction}) or "")
    return events

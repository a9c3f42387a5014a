"""Run a scenario task: start (fresh, resumed, forked or one-off), play the turns, analyse.

    run_scenario(ctx)
    ├── prepare        the definition (+ overrides), the state: from the task's own log when
    │                  resuming, from the parent's log up to turn k when forking
    ├── play_turn × N  see turn.py; a checkpoint after each finished turn
    └── analyse        every K turns and at the end; the summary the runner records

`ctx.task.spec` is {"scenario", "overrides", "seed", "fork_of", "from_turn", "definition",
"interaction", "stored_cast", "ecosystem", "write_back"}; the keys may also sit under
spec["inputs"]. Stored characters (`stored_cast`) recall their memories each turn and, when
the run ends, remember it (memories.py) — a fork or batch member only with `write_back`.
"""

from __future__ import annotations

import random
from typing import Any

from app.core.db import session_scope
from app.kinds.scenario import replay, store
from app.kinds.scenario.relationships import Ledger, Relationship, pair_key
from app.kinds.scenario.replay import Event, RunState
from app.kinds.scenario.replies import ActorMove
from app.kinds.scenario.schema import Scenario, apply_overrides, validate
from app.run.errors import AgentFailed
from app.run.llm import LLMError
from app.run.scenario import memories
from app.run.scenario.analysis import (
    analyse,
    analysis_due,
    current_graph,
    write_analysis_file,
    write_turn_files,
)
from app.run.scenario.distributed import moves_from_workers
from app.run.scenario.turn import (
    Run,
    actor_move,
    apply_move,
    emit_many,
    play_turn,
    take_inbox,
)

REMOTE = moves_from_workers  # how a distributed scenario's simultaneous turn reaches the workers


def spec_value(spec: dict[str, Any], key: str) -> Any:
    """A run parameter from the task spec, or from the submitted inputs kept inside it."""
    if spec.get(key) is not None:
        return spec[key]
    return (spec.get("inputs") or {}).get(key)


def traits_of(scenario: Scenario) -> dict[str, dict[str, float]]:
    """Each character's Big Five, which temper how its ties move (app.kinds.scenario
    .relationships: compatibility)."""
    return {c.name: dict(c.traits) for c in scenario.characters}


def starting_ledger(scenario: Scenario) -> Ledger:
    ledger = Ledger()
    for rel in scenario.relationships:
        a, b = pair_key(rel.between[0], rel.between[1])
        ledger.set(Relationship(a=a, b=b, strength=rel.strength, trust=rel.trust))
    return ledger


def _checked(data: dict[str, Any], overrides: dict[str, Any]) -> Scenario:
    merged, problems = apply_overrides(data, overrides)
    scenario, more = validate(merged)
    problems += more
    if scenario is None or problems:
        listed = "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in problems)
        raise AgentFailed(f"invalid scenario: {listed}")
    return scenario


async def run_scenario(ctx: Any) -> str:
    """Play the task's scenario to the end and return the summary the task records."""
    try:
        run, start = await prepare(ctx)
        run.state.ledger.traits = traits_of(run.scenario)  # also after a resume or a fork
        stored = dict(spec_value(ctx.task.spec or {}, "stored_cast") or {})
        fork_of = spec_value(ctx.task.spec or {}, "fork_of")
        run.memory_bank = await memories.load_bank(
            stored, ctx.task_id, not_from=int(fork_of) if fork_of is not None else None)
        interaction = spec_value(ctx.task.spec or {}, "interaction")
        if interaction:
            return await _one_off(run, interaction)
        analyses = replay.analyses(await _own_events(ctx))
        for turn in range(run.state.turn + 1, run.total + 1):
            await play_turn(run, turn)
            await _after_turn(run, turn, start, analyses)
        await _undelivered(run)
        if run.scenario.analyst.enabled and not any(a["final"] for a in analyses):
            analyses.append(await analyse(run, run.state.turn, final=True, start=start))
            write_analysis_file(run, analyses)
    except LLMError as exc:
        raise AgentFailed(f"the model failed: {exc}") from exc
    moves, skipped = _move_counts(await _own_events(ctx))
    if skipped and not moves:
        raise AgentFailed(
            f"no actor produced a usable reply: all {skipped} moves over {run.state.turn} turns "
            "were skipped (see the actor_reply_invalid events for why)")
    summary = _summary(run, analyses)
    if skipped:
        summary = (f"{summary} Degraded: {skipped} of {moves + skipped} actor moves were "
                   "skipped (unusable replies).")[:4000]
    await ctx.emit("scenario_finished", {"turns": run.state.turn, "summary": summary,
                                         "moves": moves, "skipped_moves": skipped,
                                         "degraded": bool(skipped)})
    await _remember(ctx, run, stored)
    return summary


async def _undelivered(run: Run) -> None:
    """Messages that came as the last turn began have no turn left to be answered in: each
    goes into the transcript as not delivered, saying why, instead of vanishing."""
    run.ctx.inbox_waiting = None  # look, whatever the last step write saw
    left = await take_inbox(run, run.state.turn)
    await emit_many(run.ctx, [("user_message", {
        **m, "undelivered": "it came during the last turn; the run ended before another"})
        for m in left])


async def _remember(ctx: Any, run: Run, stored: dict[str, int]) -> None:
    """The stored cast remembers the run, and the ecosystem keeps its ties — but a fork, a
    batch member or a one-off interaction is a what-if: it leaves nothing behind unless asked
    to (`write_back`)."""
    spec = ctx.task.spec or {}
    if not stored or (spec_value(spec, "fork_of") is not None
                      and not spec_value(spec, "write_back")):
        return
    written = await memories.remember_run(
        run, ctx.task_id, stored, replay.effective(await _own_events(ctx)),
        spec_value(spec, "ecosystem"))
    await ctx.emit("memories_written", {"characters": sorted(stored), "memories": written})


def _move_counts(events: list[Event]) -> tuple[int, int]:
    """(moves the actors made, moves skipped after unusable replies) in this run's own log."""
    moves = sum(1 for e in events if e["type"] == "interaction" and not e["data"].get("scripted"))
    return moves, sum(1 for e in events if e["type"] == "actor_skipped")


async def _after_turn(run: Run, turn: int, start: Ledger, analyses: list[dict[str, Any]]) -> None:
    graph = current_graph(run)
    await run.ctx.emit("graph", graph)
    write_turn_files(run, graph)
    if analysis_due(run, turn):
        analyses.append(await analyse(run, turn, final=False, start=start))
        write_analysis_file(run, analyses)
    await run.ctx.save_checkpoint([], {"scenario_turn": turn, "seed": run.seed})


async def _own_events(ctx: Any) -> list[Event]:
    async with session_scope() as session:
        return await replay.load_events(session, ctx.task_id)


async def prepare(ctx: Any) -> tuple[Run, Ledger]:
    """The run to play and its starting ties; writes the prelude events when starting."""
    own = await _own_events(ctx)
    if any(e["type"] == "scenario_started" for e in own):
        return await _resume(ctx, own)
    spec = ctx.task.spec or {}
    fork_of = spec_value(spec, "fork_of")
    if fork_of is not None:
        return await _fork(ctx, spec, int(fork_of))
    async with session_scope() as session:
        try:
            data = spec_value(spec, "definition") or await store.resolve(session, spec["scenario"])
        except (store.ScenarioNotFound, KeyError) as exc:
            raise AgentFailed(f"unknown scenario {spec.get('scenario')!r}") from exc
    scenario = _checked(data, spec_value(spec, "overrides") or {})
    seed = spec_value(spec, "seed")
    seed = int(seed) if seed is not None else random.randrange(2**31)
    ledger = starting_ledger(scenario)
    await emit_many(ctx, [_started_event(scenario, ledger, seed)])
    state = RunState(states={c.name: c.emotional_state for c in scenario.characters},
                     ledger=Ledger(dict(ledger.rels)))
    run = Run(ctx=ctx, scenario=scenario, seed=seed, state=state, remote_moves=REMOTE)
    await _initial_graph(run)
    return run, ledger


def _started_event(scenario: Scenario, ledger: Ledger, seed: int,
                   **extra: Any) -> tuple[str, dict[str, Any]]:
    return ("scenario_started", {
        "name": scenario.name, "title": scenario.title, "scenario": scenario.model_dump(),
        "relationships": ledger.dump(), "seed": seed, "turns": scenario.turn_count, **extra})


async def _initial_graph(run: Run) -> None:
    graph = current_graph(run)
    await run.ctx.emit("graph", graph)
    write_turn_files(run, graph)


async def _resume(ctx: Any, own: list[Event]) -> tuple[Run, Ledger]:
    """Continue after the last finished turn; a half-played turn is played again from its start."""
    start = replay.started(replay.effective(own))
    scenario = Scenario.model_validate(start["scenario"])
    state = replay.state_at(own)
    run = Run(ctx=ctx, scenario=scenario, seed=int(start["seed"]), state=state,
              remote_moves=REMOTE)
    # Messages delivered to the half-played turn would be lost with it: hand them over again.
    run.carried_inbox = [e["data"] for e in own if e["type"] == "user_message"
                         and e["data"].get("turn") == state.turn + 1]
    await ctx.emit("scenario_resumed", {"after_turn": state.turn})
    return run, Ledger.load(start.get("relationships", []))


async def _fork(ctx: Any, spec: dict[str, Any], parent_id: int) -> tuple[Run, Ledger]:
    """Start from the parent's turn k: copy its turns 1..k into this log, then go on."""
    async with session_scope() as session:
        parent = replay.effective(await replay.load_events(session, parent_id))
    try:
        parent_start = replay.started(parent)
    except LookupError as exc:
        raise AgentFailed(f"task {parent_id} is not a scenario run") from exc
    done = replay.state_at(parent).turn
    k = spec_value(spec, "from_turn")
    k = done if k is None else int(k)
    if not 0 <= k <= done:
        raise AgentFailed(f"cannot fork from turn {k}: task {parent_id} finished {done} turns")
    scenario = _checked(parent_start["scenario"], spec_value(spec, "overrides") or {})
    seed = spec_value(spec, "seed")
    seed = int(seed) if seed is not None else int(parent_start["seed"])
    ledger = Ledger.load(parent_start.get("relationships", []))
    inherited = [(e["type"], {**e["data"], "inherited_from": parent_id}) for e in parent
                 if e["type"] in replay.TURN_TYPES and e["data"].get("turn", 0) <= k]
    prelude = [_started_event(scenario, ledger, seed, fork_of=parent_id, from_turn=k),
               *inherited]
    await emit_many(ctx, prelude)  # one transaction: a fork is either fully set up or not at all
    run = Run(ctx=ctx, scenario=scenario, seed=seed, state=replay.state_at(
        [{"seq": i, "type": t, "data": d} for i, (t, d) in enumerate(prelude)]),
        remote_moves=REMOTE)
    return run, ledger


async def _one_off(run: Run, spec: dict[str, Any]) -> str:
    """One exchange after the parent's last turn: the given line, then the other's answer."""
    if any(e["type"] == "scenario_turn" and e["data"].get("phase") == "end"
           and e["data"].get("one_off") for e in await _own_events(run.ctx)):
        return "the interaction was played already"  # a redelivered task must not replay it
    turn = run.state.turn + 1
    speaker, listener = spec["from"], spec["to"]
    opening = ActorMove(target=listener, content=spec["content"], sentiment=spec["sentiment"],
                        interaction_type=spec.get("interaction_type") or "chat")
    await run.ctx.emit("scenario_turn", {"turn": turn, "phase": "start", "one_off": True})
    await apply_move(run, speaker, opening, turn, extra={"scripted": True})
    answer = await actor_move(run, listener, turn, scene="", inbox=[], respond_to={
        "actor": speaker, "interaction_type": opening.interaction_type,
        "content": opening.content})
    if answer is not None:
        await apply_move(run, listener, answer, turn)
    await run.ctx.emit("scenario_turn", {"turn": turn, "phase": "end", "one_off": True})
    run.state.turn = turn
    graph = current_graph(run)
    await run.ctx.emit("graph", graph)
    write_turn_files(run, graph)
    reply = answer.content if answer and answer.action != "silent" else "(no answer)"
    return f"{speaker} → {listener}: {opening.content}\n{listener}: {reply}"[:4000]


def _summary(run: Run, analyses: list[dict[str, Any]]) -> str:
    graph = current_graph(run)
    final = next((a for a in reversed(analyses) if a["final"]), None)
    text = (final or {}).get("findings", {}).get("summary", "") if final else ""
    return (f"Scenario '{run.scenario.title}' finished after {run.state.turn} turns; "
            f"most central: {graph['metrics']['most_central']}. {text}").strip()[:4000]

"""The agent loop: one linear conversation worked through design → build → test → review.

Each work phase starts with its prompt (templates/prompts/phase_<name>.j2) and ends when the
model calls `finish(summary)`; review is a separate inspector call (app.run.inspector) that
may send the work back to build. The messages are the trajectory, checkpointed after every step
together with everything the step recorded (one transaction, app.run.steps), so a redelivered
or resumed task carries on where it stopped and never repeats a tool call that was recorded.

    step = deliver the inbox → one model call → run its tool calls → watch for being stuck

A model's mistake (no tool call, bad JSON, an unknown tool, wrong arguments) becomes an
observation it can correct, counted against the budget. A stuck model is warned, then escalated
to a stronger one, then stopped (app.run.agent.stuck). `delegate` and `ask_user` pause the task
without holding an agent slot (app.run.agent.waiting); the next run resumes from the checkpoint.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from app.core.prompts import render_prompt
from app.models import TaskStatus
from app.run import journal, llm
from app.run.agent.delegation import attach_tree, child_results, create_child, send_task_message
from app.run.agent.stuck import StuckDetector, current_model, models_for, respond
from app.run.agent.waiting import pause, take_wait
from app.run.context import RunContext
from app.run.inspector import review
from app.run.state import LoopState
from app.tools import schemas
from app.tools.errors import FinishRequested, WaitRequested
from app.tools.mcp_servers import mcp_tools
from app.tools.registry import Dispatched

WORK_PHASES = ("design", "build", "test")
Messages = list[dict[str, Any]]
# the README's checklist is rewritten at a phase's end at most this often, and always at the
# run's end and before a pause: a quick run's phases end milliseconds apart, and each rewrite
# (an atomic write through app.sandbox.fs) was replaced by the next one at once
README_EVERY_S = 1.0


def initial_messages(ctx: RunContext) -> Messages:
    system = render_prompt(
        "system", agent=ctx.agent, task=ctx.task, phases=WORK_PHASES,
        tools=[t["function"]["name"] for t in [
            *schemas(ctx.agent.allowed_tools),
            *(ctx.mcp.offered(ctx.agent.allowed_tools) if ctx.mcp is not None else [])]],
    )
    return [{"role": "system", "content": system}]


async def deliver_inbox(ctx: RunContext, messages: Messages) -> None:
    """Put messages people (or related tasks) posted into the conversation."""
    for note in await ctx.take_messages():
        messages.append({
            "role": "user",
            "content": render_prompt("inbox_message", author=note.author, content=note.content),
        })
        await ctx.emit("message_delivered", {"message_id": note.id, "author": note.author})


def write_progress(ctx: RunContext, done: list[str], *, now: bool = False) -> None:
    """The workspace README's checklist with `done` ticked: unless `now`, only when the last
    write is README_EVERY_S old. A subtask in its parent's workspace leaves the README alone.
    One small file through fs, no fsync: cheaper here than a hop to a thread."""
    at = time.monotonic()
    if ctx.borrowed_workspace or (not now and at - ctx.readme_at < README_EVERY_S):
        return
    ctx.readme_at = at
    ctx.workspace.write_readme(title=ctx.task.title, description=ctx.task.description,
                               done=done)


async def pause_if_asked(ctx: RunContext, messages: Messages, state: LoopState) -> None:
    """Pause before the next call when the last reply delegated work or asked a question."""
    if state.awaiting_children:
        state.awaiting_children = False
        write_progress(ctx, state.phases_done, now=True)
        await pause(ctx, TaskStatus.waiting_children, messages, state)
    question, state.question = state.question, None
    if question:
        write_progress(ctx, state.phases_done, now=True)
        await pause(ctx, TaskStatus.waiting_input, messages, state, question=question)


async def run_phase(ctx: RunContext, messages: Messages, state: LoopState) -> str:
    """Step until the model calls `finish`; returns its summary."""
    tools = schemas(ctx.agent.allowed_tools)
    if ctx.mcp is not None:
        tools = [*tools, *ctx.mcp.offered(ctx.agent.allowed_tools)]
    detector = StuckDetector.for_agent(ctx.agent.config or {}, state.detector)
    while True:
        if ctx.reply is not None:  # a dead worker's reply, finished instead of asked again
            completion = await resumed_reply(ctx, ctx.reply)
        else:
            await pause_if_asked(ctx, messages, state)
            await deliver_inbox(ctx, messages)
            completion = await ctx.chat(messages, tools=tools, models=models_for(ctx, state))
            ctx.reply = journal.Reply(completion.message)
        messages.append(completion.message)
        calls = completion.tool_calls
        try:
            summary, results = await execute_calls(ctx, calls, messages, state)
        finally:
            ctx.reply = None
        if completion.truncated:  # cut at the output limit: say so, or it would try again
            messages.append({"role": "user",
                             "content": render_prompt("output_cut", calls=bool(calls))})
        elif not calls:
            messages.append({"role": "user", "content": render_prompt("no_tool_call")})
        reason = detector.observe(calls, results)
        if reason and summary is None:
            detector.reset()
            await respond(ctx, reason, messages, state)
        state.detector = detector.to_state()
        if summary is not None:
            return summary  # work_phases checkpoints it together with the phase marked done
        # nothing with an effect comes before the next model call, which writes it then (with
        # the call, when the inbox is heard: app.run.context) if it is not written now
        await ctx.save_checkpoint(messages, state.to_checkpoint(), now=not ctx.writes_behind())


async def resumed_reply(ctx: RunContext, reply: journal.Reply) -> llm.Completion:
    """The reply whose calls a dead worker was running, to run the rest of (app.run.journal)."""
    message = reply.message
    await ctx.emit("reply_resumed", {"calls": len(message.get("tool_calls") or []),
                                     "journaled": sorted(reply.found)})
    return llm.Completion(message=message, model=ctx.task.model_used or ctx.agent.model,
                          tool_calls=list(message.get("tool_calls") or []))


def _control(name: str, output: str, ok: bool = True) -> Dispatched:
    """The outcome of a call the loop handled itself (finish, ask_user, a skipped call)."""
    return Dispatched(name, ok, output, {}, 0.0)


async def execute_calls(
    ctx: RunContext, calls: list[dict[str, Any]], messages: Messages, state: LoopState
) -> tuple[str | None, list[Dispatched]]:
    """Run one reply's tool calls in order; the summary if `finish` was among them."""
    summary: str | None = None
    results: list[Dispatched] = []
    for position, call in enumerate(calls):
        name = call["function"]["name"]
        if summary is not None:
            result = _control(name, "skipped: finish was already called", ok=False)
        else:
            try:
                result = await ctx.call_tool(name, call["function"].get("arguments") or "{}",
                                             position)
            except FinishRequested as done:
                summary = done.summary
                result = _control(name, "ok")
                ctx.record("finished", {"phase": ctx.task.phase, "summary": summary,
                                        "model": current_model(ctx, state)})
            except WaitRequested as wait:
                state.question = wait.question or wait.reason
                result = _control(name, render_prompt("question_sent"))
        results.append(result)
        messages.append({"role": "tool", "tool_call_id": call["id"], "content": result.output})
    return summary, results


async def resume(ctx: RunContext, messages: Messages, state: LoopState) -> None:
    """Coming back from a wait: hand the model its subtasks' results (answers come by inbox)."""
    wait = take_wait(state)
    if wait is None:
        return
    if wait["status"] == TaskStatus.waiting_children.value:
        children = await child_results(ctx, state)
        messages.append({"role": "user",
                         "content": render_prompt("child_results", children=children)})
        await ctx.emit("children_results", {"children": [
            {"id": c["id"], "status": c["status"], "files": len(c["files"])} for c in children]})
    await ctx.emit("resumed", {"after": wait["status"]})
    await ctx.save_checkpoint(messages, state.to_checkpoint())


async def work_phases(ctx: RunContext, messages: Messages, state: LoopState) -> None:
    """Run the work phases not yet done, each from its prompt to the model's `finish`."""
    done, summaries = state.phases_done, state.summaries
    for phase in WORK_PHASES:
        if phase in done:
            continue
        await ctx.set_phase(phase)
        if state.current != phase:
            messages.append({"role": "user", "content": render_prompt(
                f"phase_{phase}", task=ctx.task, summaries=summaries)})
            state.current = phase
            await ctx.save_checkpoint(messages, state.to_checkpoint(),
                                      now=not ctx.writes_behind())
        summaries[phase] = await run_phase(ctx, messages, state)
        done.append(phase)
        # Written with the next phase's start or the review (no model call, no tool in between),
        # so the end of a phase and the start of the next are one transaction.
        await ctx.save_checkpoint(messages, state.to_checkpoint(), now=False)
        write_progress(ctx, list(done))


async def run_agent(ctx: RunContext) -> str:
    """Work the task through its phases and reviews (with the agent's MCP servers' tools
    beside its own, when it names any); returns the final summary."""
    async with mcp_tools(ctx.settings, dict(ctx.agent.config or {}), ctx.workspace) as mcp:
        ctx.mcp = mcp
        if mcp is not None:
            await ctx.emit("mcp_tools", {"tools": sorted(mcp.routes)})
            for failure in mcp.unavailable:
                await ctx.emit("mcp_unavailable", failure)
        try:
            return await _run_agent(ctx)
        finally:
            ctx.mcp = None


async def _run_agent(ctx: RunContext) -> str:
    checkpoint = await ctx.load_checkpoint()
    state = LoopState.from_checkpoint(checkpoint.state if checkpoint else None)
    messages = list(checkpoint.messages) if checkpoint and checkpoint.messages else []
    messages = messages or initial_messages(ctx)
    ctx.services.delegate = partial(create_child, ctx, state)
    ctx.services.message_task = partial(send_task_message, ctx)
    ctx.reply = await ctx.unfinished_reply()
    await attach_tree(ctx, state)
    await resume(ctx, messages, state)
    while True:
        await work_phases(ctx, messages, state)
        await pause_if_asked(ctx, messages, state)
        if await review(ctx, messages, state):
            break
        # sent back: build again from the findings (already in the conversation), then test
        state.phases_done = ["design"]
        state.current = "build"
        await ctx.save_checkpoint(messages, state.to_checkpoint())
    summaries = state.summaries
    write_progress(ctx, [*WORK_PHASES, "review", "complete"], now=True)
    return summaries.get("test") or summaries.get("build") or summaries.get("design") or ""

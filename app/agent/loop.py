"""The agent loop: one linear conversation worked through the phases design → build → test.

Each phase starts with its prompt (templates/prompts/phase_<name>.j2) and ends when the model
calls `finish(summary)`. The messages are the trajectory and are checkpointed after every step,
so a redelivered task resumes where it stopped. A model's mistake (no tool call, bad JSON, an
unknown tool) becomes an observation it can correct, counted against the budget.
"""

from __future__ import annotations

from typing import Any

from app.agent.context import RunContext
from app.prompts import render_prompt
from app.tools import schemas
from app.tools.errors import FinishRequested

WORK_PHASES = ("design", "build", "test")


def initial_messages(ctx: RunContext) -> list[dict[str, Any]]:
    system = render_prompt(
        "system", agent=ctx.agent, task=ctx.task, phases=WORK_PHASES,
        tools=[t["function"]["name"] for t in schemas(ctx.agent.allowed_tools)],
    )
    return [{"role": "system", "content": system}]


async def deliver_inbox(ctx: RunContext, messages: list[dict[str, Any]]) -> None:
    """Put messages people (or related tasks) posted into the conversation."""
    for note in await ctx.take_messages():
        messages.append({
            "role": "user",
            "content": render_prompt("inbox_message", author=note.author, content=note.content),
        })
        await ctx.emit("message_delivered", {"message_id": note.id, "author": note.author})


async def run_phase(ctx: RunContext, messages: list[dict[str, Any]], state: dict[str, Any]) -> str:
    """Step until the model calls `finish`; returns its summary."""
    tools = schemas(ctx.agent.allowed_tools)
    while True:
        await deliver_inbox(ctx, messages)
        completion = await ctx.chat(messages, tools=tools)
        messages.append(completion.message)
        if not completion.tool_calls:
            messages.append({"role": "user", "content": render_prompt("no_tool_call")})
            await ctx.save_checkpoint(messages, state)
            continue
        summary = await execute_calls(ctx, completion.tool_calls, messages)
        await ctx.save_checkpoint(messages, state)
        if summary is not None:
            return summary


async def execute_calls(
    ctx: RunContext, calls: list[dict[str, Any]], messages: list[dict[str, Any]]
) -> str | None:
    """Run one reply's tool calls in order; returns the summary if `finish` was among them."""
    summary: str | None = None
    for call in calls:
        fn = call["function"]
        if summary is not None:
            content = "skipped: finish was already called"
        else:
            try:
                content = (await ctx.call_tool(fn["name"], fn.get("arguments") or "{}")).output
            except FinishRequested as done:
                summary = done.summary
                content = "ok"
                await ctx.emit("finished", {"phase": ctx.task.phase, "summary": summary})
        messages.append({"role": "tool", "tool_call_id": call["id"], "content": content})
    return summary


async def run_agent(ctx: RunContext) -> str:
    """Work the task through its phases; returns the final summary."""
    checkpoint = await ctx.load_checkpoint()
    state: dict[str, Any] = dict(checkpoint.state) if checkpoint else {}
    messages = list(checkpoint.messages) if checkpoint and checkpoint.messages else []
    messages = messages or initial_messages(ctx)
    done: list[str] = state.setdefault("phases_done", [])
    summaries: dict[str, str] = state.setdefault("summaries", {})
    for phase in WORK_PHASES:
        if phase in done:
            continue
        await ctx.set_phase(phase)
        if state.get("current") != phase:
            messages.append({"role": "user", "content": render_prompt(
                f"phase_{phase}", task=ctx.task, summaries=summaries)})
            state["current"] = phase
            await ctx.save_checkpoint(messages, state)
        summaries[phase] = await run_phase(ctx, messages, state)
        done.append(phase)
        await ctx.save_checkpoint(messages, state)
        ctx.workspace.write_readme(title=ctx.task.title, description=ctx.task.description,
                                   done=done)
    await ctx.set_phase("review")
    ctx.workspace.write_readme(title=ctx.task.title, description=ctx.task.description,
                               done=[*done, "review", "complete"])
    return summaries.get("test") or summaries.get("build") or summaries.get("design") or ""

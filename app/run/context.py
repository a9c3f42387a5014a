"""RunContext: what every runner kind (agent, playbook, scenario) uses to act for one task.

It owns the durable side of a run: events, usage accounting, budget checks before each model
call, the task's inbox, checkpoints for resuming, and tool dispatch with its `tool_call` event.

A step's writes (its `llm_call` event and usage, its `tool_call` events and resource use, the
phase change, the checkpoint) are collected in a StepRecord and written in one transaction by
`flush()`, which `save_checkpoint` and `emit` call, and `chat` calls before every model call:
nothing a step did is ever still pending when the model is asked again.

On PostgreSQL a run hears its inbox (app.core.listen) rather than asking a step write whether a
message is waiting. When that tells enough (the ear is quiet) and the step made no call with an
effect, its write goes out with the next model call instead of before it, and is awaited as
soon as the reply is in, before any tool of that reply runs: the write's commit (~1 ms, most of
it the server's WAL flush) overlaps the call. A step whose calls had effects is written before
the call, as always; one without is repeated whole if its worker dies during the call.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlmodel import col

from app.core import tracing
from app.core.config import Settings
from app.core.db import RunConnection, get_engine, session_scope
from app.core.listen import Ear, listener
from app.core.redact import redact, redact_obj
from app.core.transient import retrying, to_the_end
from app.models import (
    INBOX_CHANNEL,
    Agent,
    Task,
    TaskCheckpoint,
    TaskMessage,
    from_row,
    table,
    utcnow,
)
from app.run import journal, llm
from app.run.activity import Activity
from app.run.budget import Limits, Spent, estimate_prompt_tokens, reserve
from app.run.checkpoints import checkpoint_of, load_checkpoint
from app.run.condense import NEAR_WINDOW, condense, window_for
from app.run.errors import BudgetExceeded
from app.run.provider_state import save_seen
from app.run.steps import StepRecord, Written, store_step
from app.sandbox.shell import ShellState
from app.sandbox.workspace import Workspace
from app.tasks.events import publish
from app.tasks.lifecycle import Completed
from app.tools.errors import ToolControl
from app.tools.ports import Ports
from app.tools.registry import Dispatched, ToolContext, dispatch

if TYPE_CHECKING:
    from app.run.budget import TaskTree


@dataclass
class RunContext:
    task: Task
    agent: Agent
    workspace: Workspace
    settings: Settings
    limits: Limits
    worker_id: str
    spent: Spent = field(default_factory=Spent)
    started_monotonic: float = field(default_factory=time.monotonic)
    elapsed_before_s: float = 0.0
    services: Ports = field(default_factory=Ports)
    borrowed_workspace: bool = False  # a subtask working in its parent's workspace
    # Set when the task is in a tree of delegated tasks: the root's budget covers them all.
    tree: TaskTree | None = None
    # What the current step has done and not yet written (see flush)
    pending: StepRecord = field(default_factory=StepRecord)
    # The reply whose tool calls are running, and the journal rows its calls opened since the
    # last checkpoint (settled by the next one: app.run.journal)
    reply: journal.Reply | None = None
    open_intents: list[int] = field(default_factory=list)
    # the agent's MCP servers' tools for this run (app.tools.mcp_servers), when it names any
    mcp: Any = None
    # the run's step writes go through this (one kept connection while the runner runs it)
    connection: RunConnection = field(default_factory=RunConnection)
    # what the last step write saw of the inbox (False: nothing unseen then), used up by the
    # next take_messages, which then needs no read of its own
    inbox_waiting: bool | None = None
    # the inbox's notifications for this run (PostgreSQL, while a listener is connected)
    inbox: Ear | None = None
    # the step write that went out with the model call under way (see chat)
    writing: asyncio.Task[None] | None = None
    # the conversation as the store holds it (the same message objects as the loop's list):
    # a checkpoint writes only the messages after the first one that differs
    stored_messages: list[dict[str, Any]] = field(default_factory=list)
    # the tool running now, recorded by the lease keeper (app.run.activity)
    activity: Activity = field(default_factory=Activity)
    # the lease saw no checkpoint and no unsettled tool call: a first run, with nothing to
    # resume, so none is read (until this run writes a checkpoint of its own)
    fresh: bool = False
    # when the workspace README's checklist was last written (monotonic; the workspace's
    # creation writes it as the run starts): app.run.agent.loop rewrites it at most so often
    readme_at: float = field(default_factory=time.monotonic)
    # how the run ended the task when it did so in one statement (app.tasks.lifecycle)
    completed: Completed | None = None
    # the task as its tools see it (ToolContext.task: what it was submitted with, its notify
    # and github), made at the first tool call of the run rather than at each
    task_view: dict[str, Any] | None = None

    @property
    def task_id(self) -> int:
        assert self.task.id is not None
        return self.task.id

    # -- the event log -----------------------------------------------------------------------
    async def emit(self, type: str, data: dict[str, Any] | None = None) -> None:
        """Append one event durably (with whatever the step has pending) and publish it."""
        self.record(type, data)
        await self.flush()

    def record(self, type: str, data: dict[str, Any] | None = None) -> None:
        """Append one event with the step's record: durable at the next flush."""
        self.pending.events.append((type, data or {}))

    async def set_phase(self, phase: str) -> None:
        """Move the task to `phase` (unless it has ended); written with the step's record."""
        self.pending.phase = phase
        self.record("phase", {"phase": phase})
        self.task.phase = phase

    async def flush(self) -> None:
        """Write the step's pending record in one transaction, then publish its events."""
        await self.settle()
        await self._write()

    async def settle(self) -> None:
        """Await the step write under way, if one is (raising what it raised)."""
        writing, self.writing = self.writing, None
        if writing is not None:
            await writing

    def writes_behind(self) -> bool:
        """Whether a step write may go out with the next model call: the inbox is heard, and
        nothing has come to it since it was last seen empty, so the write's flag is not needed
        before the call; and the step made no call with an effect (a journaled one). What such
        a call did is in the log before the model is asked again: a worker dying while the call
        is under way would otherwise leave it to be reconciled from the journal."""
        return (self.inbox is not None and self.inbox.quiet() and not self.open_intents
                and not self.pending.settle and not self.pending.done)

    async def _write(self, *, behind: bool = False) -> None:
        if not self.pending:
            return
        # taken now: what is recorded while it is written goes with the next write
        record, self.pending = self.pending, StepRecord()
        mark = self.inbox.mark() if self.inbox is not None else None
        landed: list[Written] = []
        try:
            # one transaction, so safe to repeat when the connection drops under it; each try
            # runs to its end even when the run is cancelled meanwhile (it may have committed)
            await retrying(
                lambda: to_the_end(store_step(self.task_id, record, self.tree,
                                              self.connection), landed),
                f"write a step of task {self.task_id}")
        except BaseException:
            if not landed:
                self.pending = record.then(self.pending)  # not written: kept for the next flush
            raise
        finally:
            if landed:
                waiting = landed[0].inbox_waiting
                if not behind:  # a flag from before the model call is old news after it
                    self.inbox_waiting = waiting
                if self.inbox is not None and mark is not None:
                    self.inbox.looked(mark, found=waiting is not False)
                if record.checkpoint is not None:
                    self.stored_messages = record.checkpoint.messages
                    self.fresh = False
                publish(landed[0].events)

    # -- the model ---------------------------------------------------------------------------
    def models(self) -> list[str]:
        return [self.agent.model, *self.agent.fallback_models]

    def check_time(self) -> None:
        elapsed = self.elapsed_before_s + time.monotonic() - self.started_monotonic
        if elapsed > self.limits.timeout_s:
            raise BudgetExceeded(
                f"time budget exhausted ({elapsed:.0f}s of {self.limits.timeout_s}s)")

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        models: list[str] | None = None,
        response_format: dict[str, Any] | None = None,
        role: str = "agent",
    ) -> llm.Completion:
        """One budget-checked model call; its usage and `llm_call` event go with the step.

        `messages` is condensed in place when it nears the model's window, or when the
        provider refuses it as too long (app.run.condense)."""
        models = models or self.models()
        # the last step's effects are durable before the model's reply is acted on: written
        # now, or (when the inbox is heard) with the call and awaited when it returns
        if self.writes_behind():
            await self.settle()
            if self.pending:
                self.writing = asyncio.ensure_future(self._write(behind=True))
        else:
            await self.flush()
        try:
            self.check_time()
            window = window_for(self.agent.config, models[0])
            if window and estimate_prompt_tokens(messages, tools) > window * NEAR_WINDOW:
                await self._condense(messages, tools, int(window * NEAR_WINDOW / 2),
                                     "near_window")
            for tries in range(MAX_CONDENSE + 1):
                try:
                    return await self._chat_once(messages, tools, models, response_format,
                                                 role)
                except llm.ContextTooLong as exc:
                    target = estimate_prompt_tokens(messages, tools) // 2
                    if tries == MAX_CONDENSE or not await self._condense(
                            messages, tools, target, "context_length"):
                        raise llm.ContextTooLong(
                            f"{exc} (the conversation could not be condensed enough)") from exc
            raise AssertionError("unreachable")
        finally:
            await self.settle()

    async def _chat_once(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
        models: list[str], response_format: dict[str, Any] | None, role: str,
    ) -> llm.Completion:
        # serialised once: for the prompt's size here and as the request's messages
        messages_json = json.dumps(messages, default=str)
        prompt_estimate = estimate_prompt_tokens(messages, tools, messages_json)
        if self.tree is not None:
            await self.tree.check(models[0], prompt_estimate)
        cap = reserve(self.limits, self.spent, model=models[0], prompt_tokens=prompt_estimate)
        started = time.perf_counter()
        with tracing.span("llm.chat", {"gen_ai.request.model": models[0], "taskbench.role": role},
                          kind="client") as traced:
            try:
                completion = await llm.chat(
                    self.settings, models=models, messages=messages, tools=tools,
                    max_tokens=cap, response_format=response_format, on_event=self.emit,
                    provider=(self.agent.config or {}).get("provider"),
                    messages_json=messages_json,
                )
            except llm.LLMError:
                await save_seen(self.settings)
                raise
            await save_seen(self.settings)
            traced.set_attributes(tracing.completion_attributes(completion))
        self.inbox_waiting = None  # what the last write saw is old news after a model call
        await self.record_usage(completion, role=role, ms=(time.perf_counter() - started) * 1000)
        return completion

    async def _condense(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                        target: int, reason: str) -> bool:
        """Shorten the conversation in place towards `target` tokens; False if it cannot."""
        before = estimate_prompt_tokens(messages, tools)
        shorter = condense(messages, tools, target_tokens=target)
        if shorter is None:
            return False
        await self.emit("condensed", {
            "reason": reason, "messages_before": len(messages), "messages_after": len(shorter),
            "tokens_before": before, "tokens_after": estimate_prompt_tokens(shorter, tools)})
        messages[:] = shorter
        return True

    async def record_usage(self, c: llm.Completion, *, role: str, ms: float) -> None:
        """Count one model call (in memory now; its usage and `llm_call` event at the flush)."""
        self.spent.steps += 1
        self.spent.tokens += c.prompt_tokens + c.completion_tokens
        self.spent.cost_usd += c.cost_usd
        if role == "agent":  # as the step's write sets model_used
            self.task.model_used = c.model
        self.pending.calls.append((c, role))
        self.record("llm_call", {
            "role": role, "model": c.model, "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens, "cost_usd": round(c.cost_usd, 6),
            "cached_tokens": c.cached_tokens,
            "duration_ms": round(ms, 1), "tool_calls": len(c.tool_calls),
            "content": (c.content or "")[:2000], "finish_reason": c.finish_reason,
            **({"usage_estimated": True} if c.usage_estimated else {}),
        })

    # -- tools -------------------------------------------------------------------------------
    def tool_context(self) -> ToolContext:
        if self.task_view is None:
            self.task_view = self.task.model_dump()
        return ToolContext(
            task_id=self.task_id, workspace=self.workspace, settings=self.settings,
            emit=self.emit, agent_name=self.agent.name,
            allowed_commands=self.agent.allowed_commands,
            agent_config=dict(self.agent.config or {}),
            task=self.task_view, services=self.services,
        )

    async def call_tool(self, name: str, arguments: str | dict[str, Any],
                        position: int | None = None) -> Dispatched:
        """Dispatch one tool call; its `tool_call` event and resource use (duration, CPU seconds,
        peak memory, refusals) go with the step's record, durable at the next flush.

        A call with an effect, `position` in the current reply, is journaled around its run
        (app.run.journal); one a dead worker already made is reconciled instead of repeated."""
        intent_id: int | None = None
        if position is None and self.reply is not None and self.reply.single:
            position = 0
        if self.reply is not None and position is not None and name in journal.JOURNALED:
            found = self.reply.found.pop(position, None)
            if found is not None and found.tool == name:
                settled = (journal.recorded(found) if found.status == "done"
                           else await journal.reconcile(self.task_id, self.workspace.root, found,
                                                     f"#{position + 1}"))
                if settled is not None:
                    self.open_intents.append(found.id or 0)
                    self.record("tool_reconciled", {
                        "tool": name, "key": found.key, "was": found.status,
                        "outcome": settled.data.get("reconciled", "done"),
                        "output": settled.output[:2000]})
                    return settled
                intent_id = found.id
            else:
                intent_id = await journal.open_intent(
                    self.task_id, self.workspace.root, self.reply, position, name,
                    journal.parse_args(arguments))
            self.open_intents.append(intent_id or 0)
        result = await self._dispatch(name, arguments)
        if intent_id is not None:
            if journal.marks_done_now(name):
                await journal.close_intent(intent_id, result)
            else:
                self.pending.done.append((intent_id, journal.stored(result)))
        return result

    async def _dispatch(self, name: str, arguments: str | dict[str, Any]) -> Dispatched:
        if name in FLUSH_FIRST:
            await self.flush()
        with self.activity.in_tool(name), tracing.span(
                f"tool.{name}", {"taskbench.tool": name}, expected=(ToolControl,)) as traced:
            if self.mcp is not None and name in self.mcp.routes:
                result = await self.mcp.dispatch(name, arguments, self.agent.allowed_tools)
            elif self.workspace.shared:
                async with self.workspace.lock():
                    result = await dispatch(self.tool_context(), name, arguments,
                                            self.agent.allowed_tools)
            else:
                result = await dispatch(self.tool_context(), name, arguments,
                                        self.agent.allowed_tools)
            traced.set_attributes({"taskbench.tool.ok": result.ok,
                                   "taskbench.tool.refused": result.refused})
        self.inbox_waiting = None  # and after a tool's run
        args = arguments if isinstance(arguments, dict) else redact(str(arguments))[:4000]
        self.record("tool_call", {
            "tool": name, "args": redact_obj(args), "ok": result.ok,
            "refused": result.refused, "duration_ms": round(result.duration_ms, 2),
            "output": result.output[:4000], "data": result.data,
        })
        self.pending.tool_results.append(result)
        return result

    # -- the inbox and checkpoints -----------------------------------------------------------
    async def take_messages(self) -> list[TaskMessage]:
        """Messages posted to the task that the agent has not seen yet (now marked seen).

        Most steps find none. The step write just before looked (app.run.steps), or the inbox
        is heard and quiet (PostgreSQL: nothing notified since it was last seen empty), so
        there is no read at all; otherwise a plain read, and a write transaction only when
        there are some. A message posted after that look is taken at the next step, as one
        posted after a read would be."""
        waiting, self.inbox_waiting = self.inbox_waiting, None
        if waiting is False or (self.inbox is not None and self.inbox.quiet()):
            return []
        looking = self.inbox.mark() if self.inbox is not None else None

        async def unseen() -> list[Any]:
            async with get_engine().connect() as conn:  # a read on a Core connection: no lock
                return list((await conn.execute(
                    table(TaskMessage).select()
                    .where(col(TaskMessage.task_id) == self.task_id,
                           col(TaskMessage.delivered_at).is_(None))
                    .order_by(col(TaskMessage.id))
                )).all())

        found = await retrying(unseen, "read the task's inbox")
        if self.inbox is not None and looking is not None:
            self.inbox.looked(looking, found=bool(found))
        if not found:
            return []
        rows = [from_row(TaskMessage, row._mapping) for row in found]

        async def mark() -> set[Any]:
            async with session_scope() as session:
                # only the ones nobody else marked in between (a second run of the same task)
                return set((await session.execute(
                    update(TaskMessage)
                    .where(col(TaskMessage.id).in_([r.id for r in rows]),
                           col(TaskMessage.delivered_at).is_(None))
                    .values(delivered_at=utcnow())
                    .returning(col(TaskMessage.id))
                )).scalars().all())

        taken = await retrying(mark, "mark the inbox read")
        return [row for row in rows if row.id in taken]

    async def listen(self) -> None:
        """Hear the inbox's notifications for the rest of the run (PostgreSQL, when this event
        loop's listener connects: app.core.listen); until the first look it tells nothing."""
        heard = await listener(self.settings.db_url, INBOX_CHANNEL)
        if heard is not None:
            self.inbox = heard.watch(str(self.task_id))

    def stop_listening(self) -> None:
        if self.inbox is not None:
            self.inbox.close()
            self.inbox = None

    async def load_checkpoint(self) -> TaskCheckpoint | None:
        if self.fresh:
            return None
        checkpoint = await retrying(lambda: load_checkpoint(self.task_id, self.connection),
                                    "load the checkpoint")
        if checkpoint is None:
            return None
        # one written before messages had rows holds none in them: the next writes them all
        legacy = checkpoint.message_count is None
        self.stored_messages = [] if legacy else list(checkpoint.messages)
        # the shell's folder, variables and venv, as the last run left them
        self.services.shell.state = ShellState.from_dict((checkpoint.state or {}).get("shell"))
        return checkpoint

    async def unfinished_reply(self) -> journal.Reply | None:
        """The reply a dead worker was running the calls of (app.run.journal); none read on a
        fresh run."""
        if self.fresh:
            return None
        return await journal.unfinished_reply(self.task_id, self.connection)

    async def save_checkpoint(
        self, messages: list[dict[str, Any]], state: dict[str, Any], *, now: bool = True
    ) -> None:
        """Checkpoint the trajectory with the step's record; `now=False` leaves it to the next
        flush (only where nothing with an effect can happen before that flush)."""
        state = {**state, "shell": self.services.shell.state.to_dict()}
        self.pending.checkpoint = checkpoint_of(list(messages), self.stored_messages, state,
                                                self.task.phase)
        # the journal rows of calls whose results these messages hold are settled with them
        self.pending.settle.extend(self.open_intents)
        self.open_intents = []
        if now:
            await self.flush()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


# Tools that read the task's totals from the database: the step's usage is written first
# (`delegate` sizes the subtask's budget from what the task and its tree have spent)
FLUSH_FIRST = frozenset({"delegate"})
MAX_CONDENSE = 2  # condense-and-retry rounds after a context-length refusal

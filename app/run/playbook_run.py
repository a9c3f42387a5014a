"""One playbook run: phases, steps, `when`, `for_each`, retries, `on_error`, checkpoints.

A step's result is {output, data, ok, status, json, each}; later templates read it as
`steps.<id>.<field>`. The results are checkpointed after every step and every `for_each`
item, so a redelivered run picks up after the last finished call.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field, replace
from typing import Any

from app.core.prompts import render_prompt
from app.kinds.playbook.schema import Playbook, Step
from app.kinds.playbook.templates import RenderError, evaluate, render_value
from app.run import journal
from app.run.context import RunContext
from app.run.errors import AgentFailed, ReviewFailed
from app.run.inspector import FAILED, WARNED, InspectorConfig, findings, judge
from app.run.llm import LLMError
from app.run.state import LoopState
from app.tools.errors import FinishRequested
from app.tools.registry import REGISTRY

log = logging.getLogger(__name__)
MAX_ITEMS = 50
PREVIEW = 1000
Result = dict[str, Any]
_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*\n(?P<body>.*?)\n\s*```\s*$", re.DOTALL)


def _result(ok: bool, output: str, data: dict[str, Any] | None = None, **extra: Any) -> Result:
    status = "ok" if ok else "failed"
    return {
        "output": output,
        "data": data or {},
        "ok": ok,
        "status": status,
        "json": None,
        "each": [],
        **extra,
    }


@dataclass
class PlaybookRun:
    """The state of one playbook run: finished steps' results and a `for_each` in progress."""

    ctx: RunContext
    playbook: Playbook
    inputs: dict[str, Any]
    tools: list[str]
    results: dict[str, Result] = field(default_factory=dict)
    partial: dict[str, Any] | None = None
    phase: str | None = None
    attempt: int = 1  # of the step being run (part of its calls' journal keys)

    async def run(self) -> str:
        """Every step not yet done, in order; the summary at the end."""
        await self.start()
        for step in self.playbook.steps:
            if step.id in self.results:
                continue
            await self.enter_phase("review" if step.inspect else
                                   "test" if step.check else "build")
            try:
                self.results[step.id] = await self.step(step)
            except FinishRequested as exc:  # a `finish` step ends the playbook early
                self.results[step.id] = _result(True, exc.summary)
                await self.checkpoint()
                return exc.summary
            self.partial = None
            await self.checkpoint()
        return self.summary()

    def context(self, **loop: Any) -> dict[str, Any]:
        return {"inputs": self.inputs, "steps": self.results, "tools": self.tools, **loop}

    async def start(self) -> None:
        """Restore a checkpoint of this playbook, or record the plan in the design phase."""
        saved = await self.ctx.load_checkpoint()
        state = saved.state if saved is not None else {}
        if state.get("playbook") == self.playbook.name:
            self.results = dict(state.get("results") or {})
            self.partial = state.get("partial")
            await self.ctx.emit("playbook_resumed", {"done": list(self.results)})
            return
        await self.enter_phase("design")
        await self.ctx.emit(
            "playbook_plan",
            {
                "playbook": self.playbook.name,
                "inputs": self.inputs,
                "tools": self.tools,
                "steps": [
                    {
                        "id": s.id,
                        **s.action,
                        "when": s.when,
                        "for_each": s.for_each,
                        "retries": s.retries,
                        "on_error": s.on_error,
                        "check": s.check,
                    }
                    for s in self.playbook.steps
                ],
            },
        )

    async def enter_phase(self, phase: str) -> None:
        if phase != self.phase:
            await self.ctx.set_phase(phase)
            self.phase = phase

    async def checkpoint(self) -> None:
        """Save the results so far (as plain JSON: tool data may hold e.g. datetimes)."""
        state = {"playbook": self.playbook.name, "results": self.results, "partial": self.partial}
        await self.ctx.save_checkpoint([], json.loads(json.dumps(state, default=str)))

    async def step(self, step: Step) -> Result:
        """One step: its `when`, then one call or one per `for_each` item; on_error applied."""
        if step.when is not None:
            try:
                go = evaluate(step.when, self.context())
            except RenderError as exc:
                return await self.settle(step, _result(False, f"when: {exc}"))
            if not go:
                await self.ctx.emit(
                    "step_skipped", {"id": step.id, **step.action, "when": step.when}
                )
                return {**_result(False, ""), "status": "skipped"}
        if step.for_each is None:
            return await self.settle(step, await self.attempts(step, self.context()))
        return await self.settle(step, await self.loop(step))

    async def settle(self, step: Step, result: Result) -> Result:
        """A failed result ends the run unless the step says `on_error: continue`."""
        if not result["ok"] and step.on_error == "fail":
            if step.inspect:
                raise ReviewFailed(f"playbook step {step.id!r} (inspect): {result['output']}")
            what = step.tool or "prompt"
            raise AgentFailed(
                f"playbook step {step.id!r} ({what}) failed: {result['output'][:500]}"
            )
        return result

    async def loop(self, step: Step) -> Result:
        """Run the step once per item, checkpointing after each so no item runs twice."""
        try:
            items = evaluate(step.for_each or "[]", self.context())
        except RenderError as exc:
            return _result(False, f"for_each: {exc}")
        if not isinstance(items, list | tuple) or len(items) > MAX_ITEMS:
            return _result(False, f"for_each must give a list of at most {MAX_ITEMS} items")
        done: list[Result] = []
        if self.partial and self.partial.get("id") == step.id:
            done = list(self.partial.get("items") or [])
        for index, item in enumerate(items):
            if index < len(done):
                continue
            result = await self.attempts(step, self.context(item=item, index=index))
            done.append(result)
            self.partial = {"id": step.id, "items": done}
            await self.checkpoint()
            if not result["ok"] and step.on_error == "fail":
                return _result(False, f"item {index}: {result['output']}", each=done)
        ok = all(r["ok"] for r in done)
        output = "\n\n".join(r["output"] for r in done)
        return _result(ok, output, {"count": len(done)}, each=done, json=[r["json"] for r in done])

    async def attempts(self, step: Step, context: dict[str, Any]) -> Result:
        """Render the step once, then call it up to 1 + retries times until a result is ok."""
        try:
            call = self.render(step, context)
        except RenderError as exc:
            await self.report(step, "failed", 0, f"template error: {exc}")
            return _result(False, f"template error: {exc}")
        result = _result(False, "not run")
        for attempt in range(1, step.retries + 2):
            self.attempt = attempt
            self.ctx.check_time()
            await self.report(step, "running", attempt)
            result = await self.execute(step, call, context)
            await self.report(step, result["status"], attempt, result["output"])
            if result["ok"]:
                break
            if attempt <= step.retries and step.retry_delay_s:
                await self.ctx.sleep(step.retry_delay_s)
        return result

    def render(self, step: Step, context: dict[str, Any]) -> Any:
        """The tool's arguments, or the chat messages of a prompt step."""
        if step.inspect:
            return None
        if step.tool is not None:
            return _fit_schema(step.tool, render_value(step.args, context))
        system = str(render_value(step.system, context)) if step.system else ""
        return [
            {
                "role": "system",
                "content": render_prompt(
                    "playbook_step",
                    playbook=self.playbook.name,
                    step=step.id,
                    system=system,
                    want_json=step.parse == "json",
                ),
            },
            {"role": "user", "content": str(render_value(step.prompt or "", context))},
        ]

    async def execute(self, step: Step, call: Any, context: dict[str, Any]) -> Result:
        """One attempt: the tool call or the model call, then `parse` and `ok_if` applied."""
        if step.inspect:
            return await self.inspect(step)
        if step.tool is not None:
            done = await self._call(step, call, context)
            result = _result(done.ok, done.output, done.data)
        else:
            try:
                completion = await self.ctx.chat(call, role="playbook")
            except LLMError as exc:
                return _result(False, f"the model failed: {exc}")
            text = completion.content.strip()
            result = _result(
                bool(text), text or "the model gave an empty answer", {"model": completion.model}
            )
        if result["ok"] and step.parse == "json":
            result = _parse_json(result)
        if result["ok"] and step.ok_if is not None:
            result = _judge(step.ok_if, result, context)
        return result

    async def _call(self, step: Step, call: Any, context: dict[str, Any]) -> Any:
        """The step's tool call, journaled when it has an effect (app.run.journal): a run
        resumed after its worker died reconciles the call instead of making it again."""
        assert step.tool is not None
        if step.tool not in journal.JOURNALED:
            return await self.ctx.call_tool(step.tool, call)
        self.ctx.reply = await journal.step_reply(self.ctx.task_id, step.id,
                                                  context.get("index"), self.attempt)
        try:
            return await self.ctx.call_tool(step.tool, call)
        finally:
            self.ctx.reply = None

    async def inspect(self, step: Step) -> Result:
        """The agent's inspector on the work so far; ok when it passes. Its data is the review
        (score, problems, ...) for `ok_if`; a failure that continues is a warning on record."""
        config = replace(InspectorConfig.of(self.ctx.agent), max_reviews=1,
                         on_failure=FAILED if step.on_error == "fail" else WARNED)
        summaries = {k: str(r.get("output", ""))[:1000] for k, r in self.results.items()}
        review = await judge(self.ctx, config, LoopState(summaries=summaries))
        output = "the inspector passed the work" if review["passed"] else findings(review)
        return _result(bool(review["passed"]), output, review)

    async def report(self, step: Step, status: str, attempt: int, output: str = "") -> None:
        data: dict[str, Any] = {"id": step.id, **step.action, "status": status, "attempt": attempt}
        if status != "running":
            data["output"] = output[:PREVIEW]
        await self.ctx.emit("playbook_step", data)

    def summary(self) -> str:
        """The playbook's `summary` template rendered, or a count of what happened."""
        if self.playbook.summary:
            try:
                return str(render_value(self.playbook.summary, self.context())).strip()[:20_000]
            except RenderError as exc:
                log.warning("playbook %s: summary template failed: %s", self.playbook.name, exc)
        counts = {
            s: sum(r["status"] == s for r in self.results.values())
            for s in ("ok", "skipped", "failed")
        }
        return (
            f"Playbook {self.playbook.name}: {counts['ok']} step(s) ok, "
            f"{counts['skipped']} skipped, {counts['failed']} failed and continued."
        )


def _fit_schema(tool: str, args: dict[str, Any]) -> dict[str, Any]:
    """A lone `{{ expr }}` keeps its type; where the tool wants a string, it gets one."""
    props = REGISTRY[tool].parameters.get("properties", {}) if tool in REGISTRY else {}
    for key, value in args.items():
        if props.get(key, {}).get("type") == "string" and not isinstance(value, str):
            as_json = isinstance(value, dict | list | tuple | bool) or value is None
            args[key] = json.dumps(value, default=str) if as_json else str(value)
    return args


def _judge(expression: str, result: Result, context: dict[str, Any]) -> Result:
    """The result failed unless its `ok_if` expression holds."""
    try:
        holds = evaluate(expression, {**context, "result": result})
    except RenderError as exc:
        return {
            **result,
            "ok": False,
            "status": "failed",
            "output": f"ok_if: {exc}\n{result['output']}",
        }
    if holds:
        return result
    return {
        **result,
        "ok": False,
        "status": "failed",
        "output": f"ok_if ({expression}) is false\n{result['output']}",
    }


def _parse_json(result: Result) -> Result:
    """The result with its output parsed as JSON (a ```json fence is allowed), or failed."""
    text = result["output"]
    match = _FENCE.match(text)
    try:
        value = json.loads(match.group("body") if match else text)
    except ValueError as exc:
        return _result(False, f"output is not valid JSON ({exc}): {text[:PREVIEW]}", result["data"])
    return {**result, "json": value}

"""A playbook's `inspect: true` step: the agent's inspector judges the work so far."""

# ruff: noqa: F811  (pytest fixtures imported from test_playbook are re-bound as arguments)
from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.core.db import session_scope
from app.models import Task
from app.run.errors import ReviewFailed
from app.run.playbook import run_playbook
from tests.component.test_playbook import events_of, make_context, playbooks_dir, write_playbook  # noqa: F401
from tests.fakes.llm_server import ScriptedLLM, text


def reviewed(on_error: str) -> dict:
    return {
        "name": "reviewed",
        "steps": [
            {"id": "write", "tool": "write_file",
             "args": {"path": "output/answer.txt", "content": "42"}},
            {"id": "review", "inspect": True, "on_error": on_error},
        ],
        "summary": "wrote {{ steps.write.output }}; review {{ steps.review.status }}",
    }


def verdict(score: float, *problems: str):
    return text(json.dumps({"score": score, "problems": list(problems),
                            "verdict": "pass" if score >= 0.7 else "revise"}))


async def test_inspect_step_that_fails_fails_the_run_with_findings(
    env, db, llm: ScriptedLLM, playbooks_dir: Path
):
    # given a playbook with an inspector step, and an inspector that finds a problem
    write_playbook(playbooks_dir, reviewed("fail"))
    llm.script(verdict(0.2, "the answer is unexplained"), model="test/model")
    ctx = await make_context({"playbook": "reviewed", "inputs": {}})
    # when it runs, then it fails naming the findings
    with pytest.raises(ReviewFailed, match="the answer is unexplained"):
        await run_playbook(ctx)
    inspector_call = llm.requests[-1]
    assert inspector_call["response_format"] == {"type": "json_object"}
    assert "42" in inspector_call["messages"][1]["content"]  # it saw the output file
    await ctx.flush()
    phases = [e.data["phase"] for e in await events_of(ctx) if e.type == "phase"]
    assert phases[-1] == "review"
    async with session_scope() as session:
        task = await session.get(Task, ctx.task_id)
    assert task and task.review and task.review["outcome"] == "failed"


async def test_inspect_step_that_continues_completes_with_warnings(
    env, db, llm: ScriptedLLM, playbooks_dir: Path
):
    write_playbook(playbooks_dir, reviewed("continue"))
    llm.script(verdict(0.3, "thin"), model="test/model")
    ctx = await make_context({"playbook": "reviewed", "inputs": {}})
    summary = await run_playbook(ctx)
    assert summary.endswith("review failed")
    async with session_scope() as session:
        task = await session.get(Task, ctx.task_id)
    assert task and task.review
    assert (task.review["outcome"], task.review["problems"]) == ("completed_with_warnings",
                                                                  ["thin"])


async def test_inspect_step_that_passes(env, db, llm: ScriptedLLM, playbooks_dir: Path):
    write_playbook(playbooks_dir, reviewed("fail"))
    llm.script(verdict(0.9), model="test/model")
    ctx = await make_context({"playbook": "reviewed", "inputs": {}})
    assert (await run_playbook(ctx)).endswith("review ok")

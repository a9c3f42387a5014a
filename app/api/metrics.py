"""/metrics (Prometheus text format via prometheus_client, at the root) and /api/v1/analytics
(JSON, a time range).

Both read the database, so every API replica reports the same figures and nothing is lost when
a process restarts; counters are sums over the event log and the outbox.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse
from sqlalchemy import Integer, and_, case, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import CurrentUser, SessionDep
from app.models import Agent, OutboxMessage, Task, TaskEvent, TaskStatus, WorkerNode, utcnow

if TYPE_CHECKING:  # prometheus_client loads on the first scrape, not in every idle API process
    from prometheus_client.core import Metric

metrics_router = APIRouter(tags=["metrics"])
router = APIRouter(prefix="/analytics", tags=["analytics"])
BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
DATA = TaskEvent.__table__.c.data  # type: ignore[attr-defined]
TERMINAL_ORDER = (TaskStatus.completed, TaskStatus.failed, TaskStatus.cancelled)


Samples = list[tuple[tuple[str, ...], float]]


def _family(kind: Literal["gauge", "counter"], name: str, help_text: str,
            labels: tuple[str, ...], samples: Samples) -> Metric:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    family = (GaugeMetricFamily if kind == "gauge" else CounterMetricFamily)(
        name, help_text, labels=list(labels))
    for values, value in samples:
        family.add_metric(list(values), float(value))
    return family


def _histogram(name: str, help_text: str, values: list[float]) -> Metric:
    from prometheus_client.core import HistogramMetricFamily
    from prometheus_client.utils import floatToGoString

    buckets = [(floatToGoString(b), float(sum(v <= b for v in values))) for b in BUCKETS]
    return HistogramMetricFamily(name, help_text, sum_value=sum(values),
                                 buckets=[*buckets, ("+Inf", float(len(values)))])


def _exposition(families: list[Metric]) -> tuple[bytes, str]:
    """The Prometheus text format of one scrape's families, and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.registry import Collector

    class Snapshot(Collector):
        def collect(self) -> Iterator[Metric]:
            return iter(families)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot())
    return generate_latest(registry), CONTENT_TYPE_LATEST


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    if (start.tzinfo is None) != (end.tzinfo is None):
        start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    return max((end - start).total_seconds(), 0.0)


def _task_filter(owner_id: int | None, since: datetime | None, until: datetime | None) -> Any:
    terms: list[Any] = [col(Task.id).is_not(None)]
    if owner_id is not None:
        terms.append(col(Task.owner_id) == owner_id)
    if since is not None:
        terms.append(col(Task.created_at) >= since)
    if until is not None:
        terms.append(col(Task.created_at) < until)
    return and_(*terms)


async def llm_usage(session: AsyncSession, where: Any) -> list[dict[str, Any]]:
    model = DATA["model"].as_string()
    rows = (await session.exec(
        select(model, func.count(), func.sum(DATA["prompt_tokens"].as_integer()),  # type: ignore[call-overload]
               func.sum(DATA["completion_tokens"].as_integer()),
               func.sum(DATA["cost_usd"].as_float()))
        .join(Task, col(Task.id) == col(TaskEvent.task_id))
        .where(col(TaskEvent.type) == "llm_call", where).group_by(model)
    )).all()
    return [{"model": m or "unknown", "calls": n, "prompt_tokens": p or 0,
             "completion_tokens": c or 0, "cost_usd": round(cost or 0.0, 6)}
            for m, n, p, c, cost in rows]


async def tool_usage(session: AsyncSession, where: Any) -> list[dict[str, Any]]:
    tool = DATA["tool"].as_string()
    refused = func.sum(case((DATA["refused"].as_boolean().is_(True), 1), else_=0)).cast(Integer)
    rows = (await session.exec(
        select(tool, func.count(), refused)
        .join(Task, col(Task.id) == col(TaskEvent.task_id))
        .where(col(TaskEvent.type) == "tool_call", where).group_by(tool)
    )).all()
    return [{"tool": t or "unknown", "calls": n, "refused": r or 0} for t, n, r in rows]


async def task_times(session: AsyncSession, where: Any) -> tuple[list[float], list[float]]:
    """(assignment waits, run durations) in seconds."""
    rows = (await session.exec(
        select(Task.created_at, Task.assigned_at, Task.started_at, Task.finished_at).where(where)
    )).all()
    waits = [w for c, a, _s, _f in rows if (w := _seconds(c, a)) is not None]
    runs = [d for _c, a, s, f in rows if (d := _seconds(s or a, f)) is not None]
    return waits, runs


async def _counts(session: AsyncSession, column: Any, where: Any = True) -> dict[str, int]:
    rows = (await session.exec(select(column, func.count()).where(where).group_by(column))).all()
    return {str(k): int(n) for k, n in rows}


@metrics_router.get("/metrics", response_class=PlainTextResponse, include_in_schema=False)
async def metrics(session: SessionDep) -> PlainTextResponse:
    """Prometheus scrape endpoint (aggregates only: no titles, no users)."""
    body, media_type = _exposition(await _task_families(session)
                                   + await _usage_families(session)
                                   + await _worker_families(session))
    return PlainTextResponse(body, media_type=media_type)


async def _task_families(session: AsyncSession) -> list[Metric]:
    by_status = await _counts(session, Task.status)
    ended = await _counts(session, Task.status, col(Task.finished_at).is_not(None))
    waits, runs = await task_times(session, True)
    return [
        _family("gauge", "taskbench_tasks", "Tasks by status.", ("status",),
                [((s.value,), by_status.get(s.value, 0)) for s in TaskStatus]),
        _family("gauge", "taskbench_queue_depth", "Tasks waiting for an agent.", (),
                [((), by_status.get("pending", 0))]),
        _family("counter", "taskbench_tasks_finished",
                "Tasks that reached an end, by outcome (completed counts as a success).",
                ("status",), [((s.value,), ended.get(s.value, 0)) for s in TERMINAL_ORDER]),
        _histogram("taskbench_assignment_wait_seconds", "Submission to assignment.", waits),
        _histogram("taskbench_task_duration_seconds", "Start to finish of ended tasks.", runs),
    ]


async def _usage_families(session: AsyncSession) -> list[Metric]:
    llm = await llm_usage(session, True)
    tools = await tool_usage(session, True)
    emails = await _counts(session, OutboxMessage.status)
    return [
        _family("counter", "taskbench_llm_calls", "LLM calls by model.", ("model",),
                [((r["model"],), r["calls"]) for r in llm]),
        _family("counter", "taskbench_llm_tokens", "LLM tokens by model and kind.",
                ("model", "kind"), [((r["model"], k), r[f"{k}_tokens"])
                                    for r in llm for k in ("prompt", "completion")]),
        _family("counter", "taskbench_llm_cost_usd", "LLM spend in USD by model.",
                ("model",), [((r["model"],), r["cost_usd"]) for r in llm]),
        _family("counter", "taskbench_tool_calls", "Tool calls by tool.", ("tool",),
                [((r["tool"],), r["calls"]) for r in tools]),
        _family("counter", "taskbench_tool_refusals", "Refused tool calls by tool.",
                ("tool",), [((r["tool"],), r["refused"]) for r in tools]),
        _family("gauge", "taskbench_emails",
                "Outbox messages by status (sent, failed, …).", ("status",),
                [((k,), v) for k, v in sorted(emails.items())]),
    ]


async def _worker_families(session: AsyncSession) -> list[Metric]:
    now = utcnow()
    workers = (await session.exec(select(WorkerNode))).all()
    agents = await _counts(session, Agent.status)
    return [
        _family("gauge", "taskbench_worker_heartbeat_age_seconds",
                "Seconds since each worker's last heartbeat.", ("worker",),
                [((w.id,), _seconds(w.heartbeat_at, now) or 0.0) for w in workers]),
        _family("gauge", "taskbench_worker_tasks_in_flight",
                "Tasks each worker is running (as of its last heartbeat).", ("worker",),
                [((w.id,), w.tasks_in_flight) for w in workers]),
        _family("gauge", "taskbench_agents", "Agents by status.", ("status",),
                [((k,), v) for k, v in sorted(agents.items())]),
    ]


@router.get("")
async def analytics(
    session: SessionDep, user: CurrentUser,
    since: Annotated[datetime | None, Query(description="tasks created at or after")] = None,
    until: Annotated[datetime | None, Query(description="tasks created before")] = None,
) -> dict[str, Any]:
    """Figures over tasks created in [since, until): yours, or everyone's for admins."""
    where = _task_filter(None if user.is_admin else user.id, since, until)
    waits, runs = await task_times(session, where)
    by_status = await _counts(session, Task.status, where)
    agents = (await session.exec(
        select(Agent.name, func.count(), func.avg(Task.cost_usd), func.sum(Task.cost_usd))
        .join(Task, col(Task.agent_id) == col(Agent.id)).where(where).group_by(Agent.name)
    )).all()
    return {
        "range": {"since": since, "until": until},
        "tasks": {"count": sum(by_status.values()), "by_status": by_status},
        "assignment_wait_s": _avg(waits), "duration_s": _avg(runs),
        "agents": [{"agent": n, "tasks": c, "avg_cost_usd": round(a or 0, 6),
                    "cost_usd": round(s or 0, 6)} for n, c, a, s in agents],
        "llm": await llm_usage(session, where),
        "tools": await tool_usage(session, where),
    }


def _avg(values: list[float]) -> dict[str, float | int]:
    ordered = sorted(values)
    p50 = ordered[len(ordered) // 2] if ordered else 0.0
    return {"count": len(values), "avg": round(sum(values) / len(values), 3) if values else 0.0,
            "p50": round(p50, 3), "max": round(ordered[-1], 3) if ordered else 0.0}

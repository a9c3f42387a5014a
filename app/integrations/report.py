"""PDF reports: the task report every finished task gets, and agent-written Markdown reports.

    ensure_report(task_id)            the task's report.pdf, rendered on demand if missing
    render_task_report(task_id)       (re)render it now
    render_markdown_report(...)       what the make_report tool calls

The task report lives in var_dir/reports/, outside the workspace, so an agent cannot plant a
fake one; it is rendered from templates/reports/task_report.html with report.css.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from app.core.config import Settings, get_settings
from app.core.db import session_scope
from app.core.jinja import environment
from app.integrations import links
from app.integrations import report_data as rd
from app.integrations.markup import REPORTS_TEMPLATES
from app.models import TERMINAL, Agent, Task, TaskEvent, utcnow
from app.sandbox import fs

log = logging.getLogger(__name__)


SectionLoader = Callable[[int], Awaitable[dict[str, Any]]]
_SECTIONS: dict[str, tuple[str, str, SectionLoader]] = {}


def add_section(kind: str, heading: str, template: str, load: SectionLoader) -> None:
    """A task kind's own part of its report: `template` (in templates/reports/) rendered with
    what `load(task_id)` returns, listed as `heading` in the contents. Kinds register theirs
    (kinds sit above this layer)."""
    _SECTIONS[kind] = (heading, template, load)


async def _kind_section(task: Task) -> dict[str, Any] | None:
    """The kind's section, or None; a section that cannot be built is left out (and logged),
    never a reason for the report to fail."""
    entry = _SECTIONS.get(getattr(task.kind, "value", task.kind))
    if entry is None or task.id is None:
        return None
    heading, template, load = entry
    try:
        return {"heading": heading, "template": template, **await load(task.id)}
    except Exception:  # noqa: BLE001 - the rest of the report still renders
        log.warning("report section of %s task %s failed", task.kind, task.id, exc_info=True)
        return None


def report_path(task_id: int, settings: Settings | None = None) -> Path:
    """Where the task's report.pdf is kept."""
    settings = settings or get_settings()
    return Path(settings.var_dir) / "reports" / f"task-{int(task_id)}.pdf"


def workspace_root(task: Task) -> Path | None:
    root = Path(task.workspace) if task.workspace else None
    return root if root and root.is_dir() else None


async def load_report_context(session: Any, task_id: int, settings: Settings) -> dict[str, Any]:
    """Everything task_report.html shows, read from the row, the event log and the workspace."""
    task = await session.get(Task, task_id)
    if task is None:
        raise LookupError(f"no task {task_id}")
    agent = await session.get(Agent, task.agent_id) if task.agent_id else None
    result = await session.exec(
        select(TaskEvent).where(TaskEvent.task_id == task_id).order_by(col(TaskEvent.seq))
    )
    events = list(result.all())
    root = workspace_root(task)
    url = links.task_page(settings, task_id)
    # walks and reads of the workspace leave the event loop (the API renders on demand)
    files, images = await asyncio.to_thread(
        rd.output_files, root, lambda rel: links.file_link(settings, task_id, rel))
    plan = await asyncio.to_thread(rd.plan, task, events, root)
    steps, steps_cut = rd.timeline(events)
    return {
        "task": task,
        "agent": agent.name if agent else "—",
        "task_url": url,
        "report_url": links.report_link(settings, task_id),
        "generated_at": utcnow(),
        "duration": rd.duration(task.started_at, task.finished_at or utcnow()),
        "summary": rd.markdown(task.summary),
        "error": rd.clip(task.error or ""),
        "plan": rd.markdown(plan),
        "review": task.review or {},
        "review_findings": _findings(task.review),
        "timeline": steps,
        "timeline_cut": steps_cut,
        "files": files,
        "images": images,
        "searches": rd.searches(events),
        "citations": rd.citations(events),
        "root": root,
    }


def _findings(review: dict[str, Any] | None) -> list[str]:
    found = (review or {}).get("findings") or []
    items = found if isinstance(found, list) else [found]
    return [rd.clip(f, 1000) for f in items[:50]]


def _render_task_pdf(context: dict[str, Any], out: Path) -> Path:
    from app.integrations.pdf import render_pdf  # WeasyPrint: loaded when a PDF is made

    page = environment(REPORTS_TEMPLATES, autoescape=True).get_template("task_report.html")
    html = page.render(**context)
    root: Path | None = context["root"]
    roots = [root / "output"] if root else []
    data = render_pdf(html, base_dir=root or REPORTS_TEMPLATES, roots=roots)
    out.parent.mkdir(parents=True, exist_ok=True)  # var_dir/reports: the host's own folder
    fs.write_bytes(out.parent, out.name, data)
    return out


async def render_task_report(
    task_id: int, *, settings: Settings | None = None, engine: Any = None
) -> Path:
    """Render the task's report now (WeasyPrint runs in a thread: it is CPU-bound)."""
    settings = settings or get_settings()
    async with session_scope(engine) as session:
        context = await load_report_context(session, task_id, settings)
    # read in its own session, after that one closed (SQLite: one writer-capable scope at a time)
    context["section"] = await _kind_section(context["task"])
    return await asyncio.to_thread(_render_task_pdf, context, report_path(task_id, settings))


async def ensure_report(
    task_id: int, *, settings: Settings | None = None, engine: Any = None
) -> Path:
    """The task's report.pdf; rendered if missing, or afresh while the task is still running."""
    settings = settings or get_settings()
    path = report_path(task_id, settings)
    if path.is_file():
        async with session_scope(engine) as session:
            task = await session.get(Task, task_id)
            if task is None:
                raise LookupError(f"no task {task_id}")
            if task.status in TERMINAL:
                return path
    return await render_task_report(task_id, settings=settings, engine=engine)


def render_markdown_report(title: str, markdown: str, *, workspace_root: Path, out: Path) -> int:
    """Agent Markdown as a styled PDF at `out` (inside the workspace, written through fs);
    images may come only from the workspace. Returns the PDF's size."""
    from app.integrations.pdf import render_pdf  # WeasyPrint: loaded when a PDF is made

    page = environment(REPORTS_TEMPLATES, autoescape=True).get_template("markdown_report.html")
    html = page.render(
        title=rd.clip(title, 300),
        body=rd.markdown(markdown, 400_000),
        generated_at=datetime.now().replace(microsecond=0),
    )
    data = render_pdf(html, base_dir=workspace_root, roots=[workspace_root])
    return fs.write_bytes(workspace_root, out.relative_to(workspace_root).as_posix(), data)

"""Absolute links a person clicks (email, PDF report, pull request, issue comment): the
dashboard's pages under `Settings.site_url` (TASKBENCH_PUBLIC_URL, else where the API serves)."""

from __future__ import annotations

from urllib.parse import quote

from app.core.config import Settings


def task_page(settings: Settings, task_id: int) -> str:
    """The dashboard's page of the task (timeline, files, report, messages)."""
    return f"{settings.site_url}/tasks/{int(task_id)}"


def report_link(settings: Settings, task_id: int) -> str:
    """The task's PDF report, as the dashboard serves it to a signed-in browser."""
    return f"{task_page(settings, task_id)}/report.pdf"


def file_link(settings: Settings, task_id: int, path: str) -> str:
    """One file of the task's output/ (`path` relative to output/)."""
    return f"{task_page(settings, task_id)}/files/{quote(path)}"

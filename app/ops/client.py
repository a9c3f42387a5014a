"""`taskbench submit`: submit a task to a running API and follow its events to the end."""

from __future__ import annotations

import argparse
import sys
import time

import httpx

from app.models import TERMINAL_VALUES
from app.ops.api_errors import request


def submit_and_follow(args: argparse.Namespace) -> int:
    if not args.key:
        print("an API key is needed: --key or TASKBENCH_API_KEY", file=sys.stderr)
        return 2
    headers = {"Authorization": f"Bearer {args.key}"}
    body: dict = {"title": args.title, "description": args.description}
    if args.complexity is not None:
        body["complexity"] = args.complexity
    with httpx.Client(base_url=args.api.rstrip("/") + "/api/v1", headers=headers,
                      timeout=30) as client:
        task = request(client, "POST", "/tasks", json=body).json()
        print(f"task {task['id']} {task['status']} (complexity {task['complexity']})")
        if args.no_follow:
            return 0
        return _follow(client, task["id"])


def run_scenario_and_follow(args: argparse.Namespace) -> int:
    """`taskbench scenario run NAME`: POST /scenarios/{name}/runs, then follow the task."""
    if not args.key:
        print("an API key is needed: --key or TASKBENCH_API_KEY", file=sys.stderr)
        return 2
    body: dict = {"overrides": {"turns": args.turns} if args.turns else {}}
    if args.seed is not None:
        body["seed"] = args.seed
    with httpx.Client(base_url=args.api.rstrip("/") + "/api/v1",
                      headers={"Authorization": f"Bearer {args.key}"}, timeout=30) as client:
        data = request(client, "POST", f"/scenarios/{args.name}/runs", json=body).json()
        task_id = data.get("task_id") or data.get("id")
        print(f"scenario {args.name}: task {task_id}")
        return 0 if args.no_follow else _follow(client, int(task_id))


def _follow(client: httpx.Client, task_id: int) -> int:
    after = 0
    while True:
        page = request(client, "GET", f"/tasks/{task_id}/events", params={"after": after}).json()
        for ev in page["data"]:
            after = ev["seq"]
            detail = ev["data"].get("phase") or ev["data"].get("tool") or \
                ev["data"].get("status") or ""
            print(f"  [{ev['seq']:>4}] {ev['type']:<16} {detail}")
        task = request(client, "GET", f"/tasks/{task_id}").json()
        if task["status"] in TERMINAL_VALUES and not page["data"]:
            print(f"task {task_id} {task['status']}: {task.get('summary') or task.get('error')}")
            return 0 if task["status"] == "completed" else 1
        time.sleep(0.5)


def tasks_command(args: argparse.Namespace) -> int:
    """`taskbench tasks list|show|cancel`: one line per task, or one task's fields."""
    if not args.key:
        print("an API key is needed: --key or TASKBENCH_API_KEY", file=sys.stderr)
        return 2
    with httpx.Client(base_url=args.api.rstrip("/") + "/api/v1",
                      headers={"Authorization": f"Bearer {args.key}"}, timeout=30) as client:
        if args.sub == "list":
            for t in request(client, "GET", "/tasks").json()["data"]:
                print(f"{t['id']:>5} {t['status']:<10} c{t['complexity']:<2} {t['title'][:60]}")
            return 0
        if args.sub == "cancel":
            task = request(client, "POST", f"/tasks/{args.id}/cancel").json()
        else:
            task = request(client, "GET", f"/tasks/{args.id}").json()
        for field in ("id", "title", "status", "complexity", "agent_id", "summary", "error"):
            if task.get(field) not in (None, ""):
                print(f"{field:<11} {task[field]}")
        return 0

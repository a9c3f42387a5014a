"""Commands that talk to a running API: submit, answer, tasks …, scenario run.
(Living ecosystems: app.ops.cli.ecosystems.)"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from app.ops.api_errors import CliError, request
from app.ops.cli.follow import follow

DEFAULT_API = "http://127.0.0.1:8000"
ApiOpt = Annotated[str, typer.Option("--api", envvar="TASKBENCH_API",
                                     help="The API's base URL")]
KeyOpt = Annotated[str, typer.Option("--key", envvar="TASKBENCH_API_KEY",
                                     help="Your API key", show_default=False)]
TaskId = Annotated[int, typer.Argument(min=1, help="The task's id")]


def client(api: str, key: str, timeout: float = 30) -> httpx.Client:
    if not key:
        raise CliError("an API key is needed: --key or TASKBENCH_API_KEY "
                       "(make one with `taskbench users create --email you@example.com`)")
    return httpx.Client(base_url=api.rstrip("/") + "/api/v1", timeout=timeout,
                        headers={"Authorization": f"Bearer {key}"})


def submit(
    title: Annotated[str, typer.Argument(help="What to do, in one line")],
    description: Annotated[str, typer.Option("--description", "-d",
                                             help="Details for the agent")] = "",
    complexity: Annotated[int | None, typer.Option(min=1, max=10,
                                                   help="1..10; omitted: the API "
                                                        "estimates it")] = None,
    agent: Annotated[str | None, typer.Option(help="Pin the task to this agent (by name)")] = None,
    kind: Annotated[str | None, typer.Option(help="agent (default), playbook or scenario")] = None,
    email: Annotated[list[str] | None, typer.Option(
        help="Email the result to this address (repeatable)")] = None,
    file: Annotated[list[Path] | None, typer.Option(
        exists=True, dir_okay=False, readable=True,
        help="An input file for the task, uploaded to input/ (repeatable)")] = None,
    detach: Annotated[bool, typer.Option("--detach", "--no-follow",
                                         help="Print the task id and return at once")] = False,
    api: ApiOpt = DEFAULT_API,
    key: KeyOpt = "",
) -> None:
    """Submit a task and follow it live to the end (exit 0 completed, 1 failed/cancelled)."""
    body: dict[str, Any] = {"title": title, "description": description}
    if complexity is not None:
        body["complexity"] = complexity
    if agent:
        body["agent"] = agent
    if kind:
        body["kind"] = kind
    if email:
        body["notify"] = {"email": list(email)}
    with client(api, key) as c:
        if file:
            handles = [(p.name, p.open("rb")) for p in file]
            try:
                task = request(c, "POST", "/tasks/with-files", data={"task": json.dumps(body)},
                               files=[("files", h) for h in handles]).json()
            finally:
                for _name, fh in handles:
                    fh.close()
        else:
            task = request(c, "POST", "/tasks", json=body).json()
        estimated = " estimated" if task.get("complexity_estimated") else ""
        print(f"task {task['id']} {task['status']} (complexity {task['complexity']}{estimated})")
        if detach:
            return
        raise typer.Exit(follow(c, task["id"], api))


def answer(
    task_id: TaskId,
    text: Annotated[str, typer.Argument(help="Your answer to the task's question")],
    api: ApiOpt = DEFAULT_API,
    key: KeyOpt = "",
) -> None:
    """Answer the question a task is waiting on; the task resumes."""
    with client(api, key) as c:
        request(c, "POST", f"/tasks/{task_id}/answer", json={"content": text})
    print(f"answered task {task_id}; it resumes (follow it: taskbench tasks logs {task_id} "
          "--follow)")


tasks_app = typer.Typer(help=("List, show, cancel, pause, resume, follow and download tasks on "
                               "a running API."),
                        no_args_is_help=True)


@tasks_app.command("list")
def tasks_list(
    status: Annotated[str | None, typer.Option(help="Only tasks in this status")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200, help="How many")] = 50,
    api: ApiOpt = DEFAULT_API, key: KeyOpt = "",
) -> None:
    """Your tasks, newest first: id, status, complexity, title."""
    params: dict[str, Any] = {"limit": limit}
    if status:
        params["status"] = status
    with client(api, key) as c:
        for t in request(c, "GET", "/tasks", params=params).json()["data"]:
            print(f"{t['id']:>5} {t['status']:<10} c{t['complexity']:<2} {t['title'][:60]}")


def _print_task(task: dict[str, Any]) -> None:
    for field in ("id", "title", "status", "phase", "complexity", "agent", "summary", "error"):
        if task.get(field) not in (None, ""):
            print(f"{field:<11} {task[field]}")
    usage = task.get("usage") or {}
    if usage.get("steps"):
        print(f"{'usage':<11} {usage['prompt_tokens'] + usage['completion_tokens']} tokens, "
              f"${usage['cost_usd']:.4f}, {usage['steps']} model calls")


@tasks_app.command("show")
def tasks_show(task_id: TaskId, api: ApiOpt = DEFAULT_API, key: KeyOpt = "") -> None:
    """One task's status, result and usage."""
    with client(api, key) as c:
        _print_task(request(c, "GET", f"/tasks/{task_id}").json())


@tasks_app.command("cancel")
def tasks_cancel(task_id: TaskId, api: ApiOpt = DEFAULT_API, key: KeyOpt = "") -> None:
    """Cancel a task (its running command is stopped)."""
    with client(api, key) as c:
        _print_task(request(c, "POST", f"/tasks/{task_id}/cancel").json())


@tasks_app.command("pause")
def tasks_pause(task_id: TaskId, api: ApiOpt = DEFAULT_API, key: KeyOpt = "") -> None:
    """Pause a task now (its agent slot is freed); `tasks resume` goes on where it stopped."""
    with client(api, key) as c:
        _print_task(request(c, "POST", f"/tasks/{task_id}/pause").json())


@tasks_app.command("resume")
def tasks_resume(task_id: TaskId, api: ApiOpt = DEFAULT_API, key: KeyOpt = "") -> None:
    """Put a paused task back in the queue; it goes on from its last checkpoint."""
    with client(api, key) as c:
        _print_task(request(c, "POST", f"/tasks/{task_id}/resume").json())


@tasks_app.command("logs")
def tasks_logs(
    task_id: TaskId,
    follow_: Annotated[bool, typer.Option("--follow", "-f",
                                          help="Keep following live until the task ends")] = False,
    api: ApiOpt = DEFAULT_API, key: KeyOpt = "",
) -> None:
    """The task's events so far (with --follow: live, to the end)."""
    with client(api, key) as c:
        code = follow(c, task_id, api, live=follow_)
    raise typer.Exit(code if follow_ else 0)


@tasks_app.command("artifacts")
def tasks_artifacts(task_id: TaskId, api: ApiOpt = DEFAULT_API, key: KeyOpt = "") -> None:
    """The files the task produced (output/), with their sizes."""
    with client(api, key) as c:
        files = request(c, "GET", f"/tasks/{task_id}/artifacts").json()
    if not files:
        print("no files yet")
    for f in files:
        print(f"{f['bytes']:>10}  {f['path']}")


SAFE_PART = re.compile(r"[^A-Za-z0-9._ -]")


def local_path(out: Path, server_path: str) -> Path:
    """Where a server-named file goes under `out`: each part cleaned, never `..`, never
    absolute, never outside `out` (a hostile name cannot steer the write)."""
    parts = [SAFE_PART.sub("_", p).strip(" ") for p in server_path.replace("\\", "/").split("/")]
    parts = [p for p in parts if p and p not in (".", "..")]
    if not parts:
        raise CliError(f"refusing a file with no usable name: {server_path[:80]!r}")
    target = (out / Path(*parts)).resolve()
    if not target.is_relative_to(out.resolve()):
        raise CliError(f"refusing to write outside {out}: {server_path[:80]!r}")
    return target


@tasks_app.command("download")
def tasks_download(
    task_id: TaskId,
    path: Annotated[str | None, typer.Argument(
        help="Only this file (a path from `tasks artifacts`, or report.pdf)")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", file_okay=False,
                                      help="Folder to save into")] = Path("."),
    report: Annotated[bool, typer.Option(help="Also save the task's report.pdf")] = True,
    api: ApiOpt = DEFAULT_API, key: KeyOpt = "",
) -> None:
    """Save the task's files (and its report.pdf), or just PATH, into a folder."""
    out.mkdir(parents=True, exist_ok=True)
    with client(api, key, timeout=120) as c:
        files = request(c, "GET", f"/tasks/{task_id}/artifacts").json()
        wanted = [(f["path"], f"/tasks/{task_id}/artifacts/{f['path']}") for f in files]
        if report:
            wanted.append(("report.pdf", f"/tasks/{task_id}/report.pdf"))
        if path is not None:
            wanted = [w for w in wanted if w[0] == path]
            if not wanted:
                raise CliError(f"task {task_id} has no file {path[:80]!r} "
                               f"(see: taskbench tasks artifacts {task_id})")
        for name, url in wanted:
            target = local_path(out, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            data = request(c, "GET", url).content
            tmp = target.with_name(target.name + ".part")
            tmp.write_bytes(data)
            os.replace(tmp, target)
            print(f"{len(data):>10}  {target}")


scenario_app = typer.Typer(help="Run scenarios on a running API.", no_args_is_help=True)


@scenario_app.command("run")
def scenario_run(
    name: Annotated[str, typer.Argument(help="The scenario's name")],
    seed: Annotated[int | None, typer.Option(help="Seed for a repeatable run")] = None,
    turns: Annotated[int | None, typer.Option(min=1, max=100,
                                              help="Override the number of turns")] = None,
    detach: Annotated[bool, typer.Option("--detach", "--no-follow",
                                         help="Print the task id and return at once")] = False,
    api: ApiOpt = DEFAULT_API, key: KeyOpt = "",
) -> None:
    """Start a scenario run and follow it."""
    body: dict[str, Any] = {"overrides": {"turns": turns} if turns else {}}
    if seed is not None:
        body["seed"] = seed
    with client(api, key) as c:
        data = request(c, "POST", f"/scenarios/{name}/runs", json=body).json()
        task_id = int(data.get("task_id") or data.get("id"))
        print(f"scenario {name}: task {task_id}")
        if detach:
            return
        raise typer.Exit(follow(c, task_id, api))

"""The `taskbench` command: up, api, worker, migrate, users, agents, submit, workspaces, db."""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import logging
import os
import re
import signal
import subprocess
import sys
import time
from typing import Any

from app.core.config import get_settings


def _die_with_parent() -> None:
    """In a child: get SIGTERM when the parent dies, so `up` never leaves orphans."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def cmd_migrate(_args: argparse.Namespace) -> int:
    from app.ops.migrate import upgrade

    upgrade()
    print(f"database up to date: {_safe_url(get_settings().db_url)}")
    return 0


def _safe_url(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]+@", r"//\1:***@", url)


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from app.main import create_app

    settings = get_settings()
    host, port = args.host or settings.host, args.port or settings.port
    uvicorn.run(create_app(), host=host, port=port, log_level="info")
    return 0


def worker_argv(agents: list[str], concurrency: int, loglevel: str = "INFO") -> list[str]:
    queues = ",".join(f"agent.{a}" for a in agents) if agents else "taskbench"
    name = f"taskbench-{'-'.join(agents) or 'all'}-{os.getpid()}@%h"
    return ["worker", f"--loglevel={loglevel}", "-Q", queues, f"--concurrency={concurrency}",
            "-n", name, "--without-gossip", "--without-mingle", "--prefetch-multiplier=1"]


def cmd_worker(args: argparse.Namespace) -> int:
    agents = [a.strip() for a in (args.agents or "").split(",") if a.strip()]
    os.environ["TASKBENCH_WORKER_AGENTS"] = ",".join(agents)
    if not _sandbox_ready():
        return 2
    from worker.tasks import celery_app

    celery_app.worker_main(argv=worker_argv(agents, args.concurrency, args.loglevel))
    return 0


def _sandbox_ready() -> bool:
    """The start-up self-test: prove the jail works before taking tasks; say so loudly if not."""
    from app.sandbox.selftest import run_selftest

    settings = get_settings()
    try:
        status = run_selftest(settings)
    except RuntimeError as exc:
        print(f"REFUSING TO START: {exc}", file=sys.stderr)
        return False
    if status.get("refusing"):
        print(f"WARNING: the jail is unavailable now ({status.get('error')}); this worker "
              "refuses commands (tasks are handed back) until it works again", file=sys.stderr)
    elif not status.get("ok"):
        print("WARNING: the bubblewrap jail is NOT in use; commands run in a restricted "
              f"subprocess only ({status.get('error') or status.get('mode')}). "
              "Set TASKBENCH_SANDBOX=bwrap to refuse to run without it.", file=sys.stderr)
    return True


def cmd_up(args: argparse.Namespace) -> int:
    """Migrate, then run the API here and one Celery worker beside it; stop both together."""
    settings = get_settings()
    host, port = args.host or settings.host, args.port or settings.port
    if not _port_free(host, port):
        print(f"taskbench: port {port} on {host} is already in use — stop what holds it, or "
              f"choose another with `taskbench up --port N` (or TASKBENCH_PORT)", file=sys.stderr)
        return 2
    cmd_migrate(args)
    worker = subprocess.Popen(
        [sys.executable, "-m", "app.ops.cli", "worker", "--concurrency", str(args.concurrency)],
        preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, safe in the child
    )
    print(f"Taskbench API   http://{host}:{port}/api/v1", flush=True)
    print(f"API docs        http://{host}:{port}/docs", flush=True)
    print(f"worker pid {worker.pid} on {_safe_url(settings.celery_broker_url)}", flush=True)
    stop = {"sig": False}

    def _forward(signum: int, _frame: Any) -> None:
        stop["sig"] = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _forward)
    try:
        cmd_api(args)
    except KeyboardInterrupt:
        pass
    finally:
        _stop_child(worker)
    return 0


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _stop_child(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def cmd_users_create(args: argparse.Namespace) -> int:
    from app.auth.keys import create_user
    from app.core.db import dispose_engines, session_scope

    async def go() -> str:
        async with session_scope() as session:
            _user, key = await create_user(session, email=args.email, is_admin=args.admin)
        await dispose_engines()
        return key

    key = asyncio.run(go())
    print(key)
    print(f"(API key for {args.email}{' (admin)' if args.admin else ''}; shown once)",
          file=sys.stderr)
    return 0


def cmd_agents(_args: argparse.Namespace) -> int:
    from sqlmodel import select

    from app.core.db import dispose_engines, session_scope
    from app.models import Agent

    async def go() -> None:
        async with session_scope() as session:
            for a in (await session.exec(select(Agent))).all():
                print(f"{a.id:>3} {a.name:<16} {a.min_complexity:>2}-{a.max_complexity:<2} "
                      f"{a.status:<10} {a.active_tasks}/{a.max_concurrent}  {a.model}")
        await dispose_engines()

    asyncio.run(go())
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from app.sandbox.workspace import prune_workspaces

    seconds = parse_duration(args.older_than)
    removed = prune_workspaces(get_settings().workspaces_dir, seconds)
    print(f"removed {len(removed)} workspace(s) older than {args.older_than}")
    return 0


def parse_duration(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw]?)", text.strip())
    if not match:
        raise SystemExit(f"bad duration {text!r}; use e.g. 30m, 12h, 7d")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
    return float(match.group(1)) * unit


def cmd_db_copy(args: argparse.Namespace) -> int:
    from app.ops.dbcopy import copy_database

    counts = asyncio.run(copy_database(get_settings().db_url, args.to))
    for table, n in counts.items():
        print(f"{table:<20} {n:>8} rows copied and verified")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from app.ops.client import submit_and_follow

    return submit_and_follow(args)


def cmd_scenario_run(args: argparse.Namespace) -> int:
    from app.ops.client import run_scenario_and_follow

    return run_scenario_and_follow(args)


def complexity(text: str) -> int:
    """An integer 1..10, as the API requires (0 is an error, not a default)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer 1..10") from None
    if not 1 <= value <= 10:
        raise argparse.ArgumentTypeError(f"{value} is outside 1..10")
    return value


def cmd_tasks(args: argparse.Namespace) -> int:
    from app.ops.client import tasks_command

    return tasks_command(args)


def _add_api_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--api", default=os.environ.get("TASKBENCH_API", "http://127.0.0.1:8000"),
                    help="the API base URL (env TASKBENCH_API)")
    sp.add_argument("--key", default=os.environ.get("TASKBENCH_API_KEY", ""),
                    help="your API key (env TASKBENCH_API_KEY)")


def _add_tasks_parser(sub: Any) -> None:
    tasks = sub.add_parser("tasks", help="list, show or cancel tasks on a running API")
    tsub = tasks.add_subparsers(dest="sub", required=True)
    sp = tsub.add_parser("list", help="your tasks, newest first")
    _add_api_options(sp)
    sp.set_defaults(fn=cmd_tasks)
    for name, text in (("show", "one task's status and result"), ("cancel", "cancel a task")):
        sp = tsub.add_parser(name, help=text)
        sp.add_argument("id", type=int, help="the task id")
        _add_api_options(sp)
        sp.set_defaults(fn=cmd_tasks)


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import PackageNotFoundError, version

    p = argparse.ArgumentParser(prog="taskbench", description=__doc__)
    try:
        ver = version("taskbench")
    except PackageNotFoundError:
        ver = "unknown"
    p.add_argument("--version", action="version", version=f"taskbench {ver}")
    sub = p.add_subparsers(dest="command", required=True)
    for name, fn, text in (("up", cmd_up, "API + one worker on this machine"),
                           ("api", cmd_api, "the API alone")):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("--host")
        sp.add_argument("--port", type=int)
        sp.add_argument("--concurrency", type=int, default=2)
        sp.set_defaults(fn=fn)
    sp = sub.add_parser("worker", help="a Celery worker")
    sp.add_argument("--agents", help="serve only these agents' queues (comma-separated)")
    sp.add_argument("--concurrency", type=int, default=2)
    sp.add_argument("--loglevel", default="INFO")
    sp.set_defaults(fn=cmd_worker)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(fn=cmd_migrate)
    users = sub.add_parser("users", help="manage users").add_subparsers(dest="sub", required=True)
    sp = users.add_parser("create", help="create a user and print a new API key")
    sp.add_argument("--email", required=True)
    sp.add_argument("--admin", action="store_true")
    sp.set_defaults(fn=cmd_users_create)
    sub.add_parser("agents", help="list agents").set_defaults(fn=cmd_agents)
    ws = sub.add_parser("workspaces").add_subparsers(dest="sub", required=True)
    sp = ws.add_parser("prune", help="remove old task workspaces")
    sp.add_argument("--older-than", default="7d")
    sp.set_defaults(fn=cmd_prune)
    db = sub.add_parser("db").add_subparsers(dest="sub", required=True)
    sp = db.add_parser("copy", help="copy every table to another database")
    sp.add_argument("--to", required=True, help="e.g. postgresql+asyncpg://user@host/db")
    sp.set_defaults(fn=cmd_db_copy)
    sp = sub.add_parser("submit", help="submit a task to a running API and follow it")
    sp.add_argument("title", help="what to do, in one line")
    sp.add_argument("--description", "-d", default="", help="details for the agent")
    sp.add_argument("--complexity", type=complexity, help="1..10; omitted: the API estimates")
    _add_api_options(sp)
    sp.add_argument("--no-follow", "--detach", action="store_true",
                    help="print the task id and return without following")
    sp.set_defaults(fn=cmd_submit)
    _add_tasks_parser(sub)
    scen = sub.add_parser("scenario").add_subparsers(dest="sub", required=True)
    sp = scen.add_parser("run", help="start a scenario run on a running API and follow it")
    sp.add_argument("name")
    sp.add_argument("--seed", type=int)
    sp.add_argument("--turns", type=int, help="override the number of turns")
    _add_api_options(sp)
    sp.add_argument("--no-follow", action="store_true")
    sp.set_defaults(fn=cmd_scenario_run)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from app.core.logging import configure

    configure(json_logs=get_settings().log_json)
    for noisy in ("weasyprint", "fontTools", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from app.ops.api_errors import CliError

    try:
        return int(args.fn(args) or 0)
    except CliError as exc:
        print(f"taskbench: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

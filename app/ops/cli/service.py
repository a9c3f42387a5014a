"""Commands that run Taskbench on this machine: up, api, worker, migrate, users, agents,
workspaces prune, db copy."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from app.core.config import Settings, get_settings
from app.ops.serve import serve

HostOpt = Annotated[str | None, typer.Option(help="Address to listen on (TASKBENCH_HOST; "
                                                  "default 127.0.0.1)")]
PortOpt = Annotated[int | None, typer.Option(min=1, max=65535,
                                             help="Port to listen on (TASKBENCH_PORT; "
                                                  "default 8000)")]
ConcurrencyOpt = Annotated[int, typer.Option(min=1, max=64,
                                             help="Tasks one worker runs at once")]


def _die_with_parent() -> None:
    """In a child: get SIGTERM when the parent dies, so `up` never leaves orphans."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def safe_url(url: str) -> str:
    """A URL with its password masked."""
    return re.sub(r"//([^:/@]+):[^@]+@", r"//\1:***@", url)


def migrate(
    quiet: Annotated[bool, typer.Option("--quiet", "-q",
                                        help="Say nothing when all went well")] = False,
) -> None:
    """Apply the database migrations."""
    from app.ops.migrate import upgrade

    upgrade()
    if not quiet:
        print(f"database up to date: {safe_url(get_settings().db_url)}")


def api(host: HostOpt = None, port: PortOpt = None) -> None:
    """Run the API alone (no worker)."""
    argv = [sys.executable, "-m", "app.ops.serve"]
    argv += ["--host", host] if host else []
    argv += ["--port", str(port)] if port else []
    # the server without the CLI's libraries (app/ops/serve.py)
    os.execv(sys.executable, argv)  # noqa: S606 - our own interpreter, a fixed module


def worker(
    agents: Annotated[str, typer.Option(help="Serve only these agents' queues "
                                             "(comma-separated names)")] = "",
    concurrency: ConcurrencyOpt = 2,
    loglevel: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR")] = "INFO",
) -> None:
    """Run a Celery worker that takes tasks from the broker."""
    names = [a.strip() for a in agents.split(",") if a.strip()]
    os.environ["TASKBENCH_WORKER_AGENTS"] = ",".join(names)
    if not sandbox_ready():
        raise typer.Exit(2)
    # the worker without the CLI's libraries (worker/__main__.py); the same pid, so the same name
    os.execv(sys.executable, [sys.executable, "-m", "worker",  # noqa: S606 - a fixed module
                              "--agents", ",".join(names), "--concurrency", str(concurrency),
                              "--loglevel", loglevel])


def sandbox_ready() -> bool:
    """The start-up self-test: prove the jail works before taking tasks; say so loudly if not."""
    from app.sandbox.selftest import run_selftest

    try:
        status = run_selftest(get_settings())
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


def up(
    host: HostOpt = None,
    port: PortOpt = None,
    concurrency: ConcurrencyOpt = 2,
    verbose: Annotated[bool, typer.Option("--verbose", "-v",
                                          help="Show the API's, the worker's and the "
                                               "migrations' own logs here instead of in "
                                               "var/log/")] = False,
) -> None:
    """Migrate, then run the API and one worker on this machine; Ctrl-C stops both."""
    settings = get_settings()
    host, port = host or settings.host, port or settings.port
    if not port_free(host, port):
        print(f"taskbench: port {port} on {host} is already in use — stop what holds it, or "
              f"choose another with `taskbench up --port N` (or TASKBENCH_PORT)", file=sys.stderr)
        raise typer.Exit(2)
    log_path = Path(settings.var_dir) / "log" / "taskbench.log"
    if not verbose:
        _log_to_file(log_path)
    migrate(quiet=not verbose)
    # the worker links to the dashboard at the address served here unless PUBLIC_URL says
    env = {**os.environ, "TASKBENCH_HOST": host, "TASKBENCH_PORT": str(port)}
    out = None if verbose else log_path.open("ab")
    worker_proc = subprocess.Popen(
        [sys.executable, "-m", "app.ops.cli", "worker", "--concurrency", str(concurrency)],
        env=env, stdout=out, stderr=subprocess.STDOUT if out else None,
        preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, safe in the child
    )
    for line in startup_lines(settings, host, port, log_path if not verbose else None):
        print(line, flush=True)

    def _forward(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _forward)
    try:
        serve(host, port, verbose=verbose)
    except KeyboardInterrupt:
        pass
    finally:
        _stop_child(worker_proc)
        if out:
            out.close()


def startup_lines(settings: Settings, host: str, port: int, log_path: Path | None) -> list[str]:
    """What `up` says when it starts: where to go, what it runs on, what is missing."""
    shown = host if host not in ("0.0.0.0", "::", "") else socket.gethostname()
    base = f"http://{f'[{shown}]' if ':' in shown else shown}:{port}"
    sandbox = settings.sandbox or "bwrap when it works (checked by the worker at start)"
    if settings.llm_api_key:
        provider = f"configured ({settings.llm_base_url})"
    else:
        provider = (f"NOT configured — set TASKBENCH_LLM_API_KEY (or OPENROUTER_API_KEY / "
                    f"OPENAI_API_KEY) for {settings.llm_base_url}, or TASKBENCH_LLM_BASE_URL "
                    "for another OpenAI-compatible server")
    lines = [
        f"Taskbench is up:  dashboard {base}/",
        f"                  API       {base}/api/v1",
        f"                  docs      {base}/docs",
        f"database          {safe_url(settings.db_url)}",
        f"broker            {safe_url(settings.celery_broker_url)}",
        f"sandbox           {sandbox}",
        f"model provider    {provider}",
    ]
    if log_path is not None:
        lines.append(f"logs              {log_path} (or run with --verbose)")
    lines.append("Ctrl-C stops the API and the worker.")
    return lines


def _log_to_file(path: Path) -> None:
    """Every log line of this process (uvicorn, Alembic, ours) into `path`, not the terminal."""
    from app.core.logging import ContextFilter, TextFormatter

    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.addFilter(ContextFilter())
    handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def port_free(host: str, port: int) -> bool:
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


def users_create(
    email: Annotated[str, typer.Option(help="The user's email address")],
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an admin")] = False,
) -> None:
    """Create a user and print a new API key (shown once)."""
    from app.auth.keys import create_user
    from app.core.db import dispose_engines, session_scope

    async def go() -> str:
        async with session_scope() as session:
            _user, key = await create_user(session, email=email, is_admin=admin)
        await dispose_engines()
        return key

    key = asyncio.run(go())
    print(key)
    print(f"(API key for {email}{' (admin)' if admin else ''}; shown once)", file=sys.stderr)


def agents() -> None:
    """List the agents: id, name, complexity range, status, load, model."""
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


def parse_duration(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw]?)", text.strip())
    if not match:
        raise typer.BadParameter(f"bad duration {text!r}; use e.g. 30m, 12h, 7d")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
    return float(match.group(1)) * unit


def workspaces_prune(
    older_than: Annotated[str, typer.Option(help="Age like 30m, 12h, 7d")] = "7d",
) -> None:
    """Remove task workspaces older than the given age."""
    from app.sandbox.workspace import prune_workspaces

    removed = prune_workspaces(get_settings().workspaces_dir, parse_duration(older_than))
    print(f"removed {len(removed)} workspace(s) older than {older_than}")


def db_copy(
    to: Annotated[str, typer.Option(help="Target database URL, e.g. "
                                         "postgresql+asyncpg://user@host/db")],
) -> None:
    """Copy every table to another database (and verify the counts)."""
    from app.ops.dbcopy import copy_database

    counts = asyncio.run(copy_database(get_settings().db_url, to))
    for table, n in counts.items():
        print(f"{table:<20} {n:>8} rows copied and verified")

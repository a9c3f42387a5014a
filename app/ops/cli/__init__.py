"""The `taskbench` command (typer): run the service here, or talk to a running one.

    service.py   up, api, worker, migrate, users create, agents, workspaces prune, db copy
    remote.py    submit, answer, tasks list|show|cancel|pause|resume|logs|artifacts|download,
                 scenario run
    ecosystems.py  ecosystems living|live|pause|resume|stop (living mode)
    follow.py    a task followed live over SSE, printed for a person

`main(argv)` returns the exit code: 0 done (a followed task completed), 1 a followed task failed
or the API refused (its message in one line), 2 bad usage or the API is down (one line naming
the URL and how to start it) — never a traceback for those.
"""

from __future__ import annotations

import logging
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from app.ops.api_errors import CliError, Unreachable
from app.ops.cli import ecosystems, remote, service

app = typer.Typer(name="taskbench", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False,
                  help="Taskbench: submit a task, get back finished work.")


def _version(value: bool) -> None:
    if value:
        try:
            ver = version("taskbench")
        except PackageNotFoundError:
            ver = "unknown"
        print(f"taskbench {ver}")
        raise typer.Exit()


@app.callback()
def _root(
    _version_flag: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit")] = False,
) -> None:
    """Taskbench: submit a task, get back finished work."""


app.command("up")(service.up)
app.command("api")(service.api)
app.command("worker")(service.worker)
app.command("migrate")(service.migrate)
app.command("agents")(service.agents)
users_app = typer.Typer(help="Manage users.", no_args_is_help=True)
users_app.command("create")(service.users_create)
app.add_typer(users_app, name="users")
workspaces_app = typer.Typer(help="Manage task workspaces.", no_args_is_help=True)
workspaces_app.command("prune")(service.workspaces_prune)
app.add_typer(workspaces_app, name="workspaces")
db_app = typer.Typer(help="Database tools.", no_args_is_help=True)
db_app.command("copy")(service.db_copy)
app.add_typer(db_app, name="db")
app.command("submit")(remote.submit)
app.command("answer")(remote.answer)
app.add_typer(remote.tasks_app, name="tasks")
app.add_typer(remote.scenario_app, name="scenario")
app.add_typer(ecosystems.ecosystems_app, name="ecosystems")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module's docstring)."""
    from app.core.config import get_settings
    from app.core.logging import configure

    configure(json_logs=get_settings().log_json)
    for noisy in ("weasyprint", "fontTools", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv if argv is not None else sys.argv[1:],
                              prog_name="taskbench", standalone_mode=False)
    except Unreachable as exc:
        print(f"taskbench: {exc}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"taskbench: {exc}", file=sys.stderr)
        return 1
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except (typer.Abort, KeyboardInterrupt):
        return 130
    except typer.TyperException as exc:  # usage errors: bad or missing arguments and options
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            print(f"taskbench: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    return int(result or 0) if isinstance(result, int) else 0

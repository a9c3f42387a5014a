"""Kills armed at named fault points of a real worker process.

A test arms a point (`arm(folder, "tool_ran")`: one file per kill) and starts its workers with
`worker_env(env, folder)`, which puts tests/chaos/faultsite on their PYTHONPATH: its
sitecustomize calls `install()`, which wraps the product function at each point as its module
is imported (nothing in the product knows of faults). The first worker to reach an armed point
takes the file (an unlink: one taker, however many workers race) and SIGKILLs its whole process
group, main process and pool children: the machine died there.

    workspace_created  Workspace.create has made the task's folder
    mid_venv           `uv venv` has begun the task's .venv (the folder is there, not whole)
    tool_ran           an append, a command or an email ran; the step holding its
                       result is about to be stored
    in_tool            a command runs (a second in: the keeper has recorded it)
    model_wait         the run waits on the model (a second in, after any tool's end)
    mid_delivery       the report is rendered; the PR and the emails are not yet done
"""

from __future__ import annotations

import asyncio
import importlib.abc
import importlib.machinery
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SITE = Path(__file__).resolve().parent / "faultsite"
ROOT = Path(__file__).resolve().parents[2]
# tools whose effect a second run would repeat (an overwrite would not show a repeat)
REPEATABLE_HARM = ("insert_lines", "run_command", "run_python", "send_email")
POINTS = ("workspace_created", "mid_venv", "tool_ran", "in_tool", "model_wait", "mid_delivery")


def arm(folder: Path, point: str, times: int = 1) -> None:
    """Kill the worker that next reaches `point`, `times` times over."""
    assert point in POINTS, point
    folder.mkdir(parents=True, exist_ok=True)
    for _ in range(times):
        (folder / f"{point}.{time.time_ns()}").touch()


def fired(folder: Path, point: str) -> int:
    return len(list(folder.glob(f"fired-{point}-*")))


def worker_env(env: dict[str, str], folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    return {**env, "TASKBENCH_FAULTS_DIR": str(folder),
            "PYTHONPATH": os.pathsep.join([str(SITE), str(ROOT)])}


def armed(point: str) -> bool:
    return any(Path(os.environ["TASKBENCH_FAULTS_DIR"]).glob(f"{point}.*"))


def fire(point: str) -> None:
    """SIGKILL this worker (its process group) if `point` is armed; else return at once."""
    folder = Path(os.environ["TASKBENCH_FAULTS_DIR"])
    for taken in sorted(folder.glob(f"{point}.*")):
        try:
            taken.unlink()  # the taker of this kill
        except FileNotFoundError:
            continue
        (folder / f"fired-{point}-{os.getpid()}-{time.time_ns()}").touch()
        os.killpg(os.getpgid(0), signal.SIGKILL)


async def _fire_later(point: str) -> None:
    """Fire after a second of the loop running (the lease keeper records what the run does)."""
    if armed(point):
        await asyncio.sleep(1.0)
        fire(point)


# -- where each point is: a wrapper put around a product function when its module is imported --

def _workspace(module: Any) -> None:
    create = module.Workspace.create

    def created(self: Any, **kw: Any) -> None:
        create(self, **kw)
        fire("workspace_created")

    module.Workspace.create = created


def _venvs(module: Any) -> None:
    create_venv = module.create_venv

    def while_made(path: Path, **kw: Any) -> str:
        if armed("mid_venv"):
            # the state a kill leaves once uv has begun: its folder there, nothing whole in it
            # (a watcher thread racing the real uv lost now and then: uv is quick)
            (path / "bin").mkdir(parents=True, exist_ok=True)
            fire("mid_venv")
        return str(create_venv(path, **kw))

    module.create_venv = while_made


def _context(module: Any) -> None:
    store_step, dispatch = module.store_step, module.dispatch

    async def store(task_id: int, record: Any, *rest: Any) -> Any:
        if any(r.name in REPEATABLE_HARM for r in record.tool_results):
            fire("tool_ran")
        return await store_step(task_id, record, *rest)

    async def dispatching(ctx: Any, name: str, *rest: Any) -> Any:
        if name in ("run_command", "run_python"):
            await _fire_later("in_tool")
        return await dispatch(ctx, name, *rest)

    module.store_step, module.dispatch = store, dispatching


def _llm(module: Any) -> None:
    chat = module.chat

    async def waiting(*args: Any, **kw: Any) -> Any:
        await _fire_later("model_wait")
        return await chat(*args, **kw)

    module.chat = waiting


def _delivery(module: Any) -> None:
    github = module._github

    async def after_report(*args: Any, **kw: Any) -> Any:
        fire("mid_delivery")
        return await github(*args, **kw)

    module._github = after_report


WRAP: dict[str, Callable[[Any], None]] = {
    "app.sandbox.workspace": _workspace, "app.tools.venvs": _venvs, "app.run.context": _context,
    "app.run.llm": _llm, "app.integrations": _delivery,
}


class _WrapOnImport(importlib.abc.MetaPathFinder):
    """Finds the modules in WRAP as usual and wraps their points once they have run."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in WRAP:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        loader, run = spec.loader, spec.loader.exec_module

        def exec_module(module: Any) -> None:
            run(module)
            WRAP[name](module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install() -> None:
    sys.meta_path.insert(0, _WrapOnImport())

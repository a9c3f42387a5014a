"""`true` 200x through run_command (the task's persistent shell: one jail for all commands) vs
a new jail per command (run_jailed, how every command ran before the persistent shell) vs a bare
subprocess (p50/p95), in an empty workspace and in one holding a 5,000-file venv; the first
command's cost (the session's start); venv creation uv vs venv.

    python -m benchmarks.bench_jail

Like a worker, this process is a child subreaper (app.sandbox.reaper), so what bubblewrap
leaves behind is reaped after each command instead of piling up against the task uid's
process limit.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import app.tools  # noqa: F401  (registers the tools)
from app.core.config import Settings
from app.sandbox import reaper
from app.sandbox.jail import run_jailed
from app.sandbox.venv import uv_binary
from app.tools.registry import dispatch
from tests.fakes.tool_context import make_context

RUNS = 200


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


async def one_jail_each(root: Path) -> list[float]:
    ctx, _ = make_context(root, settings=Settings())
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        res = await run_jailed(["true"], workspace=ctx.workspace, settings=ctx.settings,
                               timeout=60)
        times.append((time.perf_counter() - start) * 1000)
        assert res.exit_code == 0, res.output
    return times


async def jailed(root: Path, files: int = 0) -> list[float]:
    """run_command `true` RUNS times; the first (which starts the session) comes first."""
    ctx, _ = make_context(root, settings=Settings())
    site = root / ".venv" / "lib" / "python3.11" / "site-packages" / "pkg"
    if files:
        for i in range(files):
            folder = site / f"m{i // 100}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"f{i}.py").write_text("x = 1\n")
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        out = await dispatch(ctx, "run_command", {"command": "true"}, None)
        times.append((time.perf_counter() - start) * 1000)
        assert out.ok and out.data["exit_code"] == 0, out.output
    ctx.services.shell.close()
    return times


def bare() -> list[float]:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(["true"], check=True)
        times.append((time.perf_counter() - start) * 1000)
    return times


def venv_time(tool: str, target: Path) -> float:
    start = time.perf_counter()
    if tool == "uv":
        subprocess.run([uv_binary() or "uv", "venv", "-q", "--python", sys.executable,
                        str(target)], check=True)
    else:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True)
    return (time.perf_counter() - start) * 1000


def main() -> None:
    reaper.become_subreaper()
    with tempfile.TemporaryDirectory() as tmp:
        first, *j = asyncio.run(jailed(Path(tmp) / "ws"))
        first5k, *j5k = asyncio.run(jailed(Path(tmp) / "ws5k", files=5000))
        each = asyncio.run(one_jail_each(Path(tmp) / "each"))
        b = bare()
        mode = Settings().sandbox or "auto"
        print(f"`true` x{RUNS} (sandbox={mode})                    p50 ms   p95 ms")
        print(f"  run_command, empty workspace             {pct(j, 50):7.2f}  {pct(j, 95):7.2f}")
        print(f"  run_command, 5k-file venv                {pct(j5k, 50):7.2f}  "
              f"{pct(j5k, 95):7.2f}")
        print(f"  baseline: a new jail per command         {pct(each, 50):7.2f}  "
              f"{pct(each, 95):7.2f}")
        print(f"  bare subprocess                          {pct(b, 50):7.2f}  {pct(b, 95):7.2f}")
        print(f"  added by the jail (empty / 5k)           {pct(j, 50) - pct(b, 50):7.2f}  "
              f"{pct(j5k, 50) - pct(b, 50):7.2f}   target ≤ 5 ms both")
        print(f"  first command (starts the session)       {first:7.2f}  {first5k:7.2f}"
              "   (empty / 5k)")
        uv = [venv_time("uv", Path(tmp) / f"uv{i}") for i in range(3)]
        venv = [venv_time("venv", Path(tmp) / f"v{i}") for i in range(3)]
        print("venv creation (median of 3)   ms")
        print(f"  uv venv                  {statistics.median(uv):7.1f}")
        print(f"  python -m venv           {statistics.median(venv):7.1f}")


if __name__ == "__main__":
    main()

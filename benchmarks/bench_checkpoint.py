"""Checkpoint benchmark: what a step's write costs as the conversation grows.

    python -m benchmarks.bench_checkpoint [--steps 200] [--db sqlite|postgres|both]

One run (a real RunContext, the runner's write path: app.run.context.flush) takes `--steps`
steps; each appends a reply and a 2 KB tool result to the conversation, records an event and
checkpoints. Printed: the write's time p50 over the first 10 steps and over the last 10 (the
conversation then ~2 × steps messages, ~2 KB × steps), beside the bare driver's durable
one-row commit on the same database. A write that rewrites the whole conversation grows with
it; one that appends the new messages stays flat.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_loop import DATABASES, _commit_floor, _configure

OUTPUT = "x" * 2000


async def bench(steps: int) -> dict[str, Any]:
    from app.core.config import get_settings
    from app.core.db import dispose_engines
    from tests.factories.scenario import make_run_context

    ctx = await make_run_context({})
    messages: list[dict[str, Any]] = [{"role": "system", "content": "system"},
                                      {"role": "user", "content": "the task"}]
    times = []
    async with ctx.connection.kept():
        for i in range(steps):
            messages.append({"role": "assistant", "content": f"step {i}", "tool_calls": [
                {"id": f"c{i}", "type": "function",
                 "function": {"name": "read_file", "arguments": f'{{"path": "f{i}"}}'}}]})
            messages.append({"role": "tool", "tool_call_id": f"c{i}", "content": OUTPUT})
            start = time.perf_counter()
            ctx.record("tool_call", {"tool": "read_file", "n": i})
            await ctx.save_checkpoint(messages, {"step": i})
            times.append(time.perf_counter() - start)
    commits = await _commit_floor(get_settings().db_url, 50)
    await dispose_engines()
    return {"first": times[:10], "last": times[-10:], "commit": commits}


def run(db: str, steps: int) -> dict[str, Any]:
    from app.ops.migrate import upgrade
    from tests.factories.environment import create_pg_database, drop_pg_database

    with tempfile.TemporaryDirectory() as tmp:
        url = (create_pg_database() if db == "postgres"
               else f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}")
        try:
            _configure(Path(tmp), url, "http://127.0.0.1:9/v1")  # no model is asked
            upgrade(url)
            return asyncio.run(bench(steps))
        finally:
            if db == "postgres":
                drop_pg_database(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--db", choices=[*DATABASES, "both"], default="both")
    args = parser.parse_args()
    print(f"a step's write (event + checkpoint), {args.steps} steps of +2 messages (~2 KB)")
    print(f"  {'':12} {'steps 1-10 p50':>15} {'last 10 p50':>13} {'1 commit p50':>14}")
    for db in DATABASES if args.db == "both" else [args.db]:
        r = run(db, args.steps)
        first, last = (statistics.median(r[k]) * 1000 for k in ("first", "last"))
        commit = statistics.median(r["commit"]) * 1000
        print(f"  {DATABASES[db]:12} {first:12.2f} ms {last:10.2f} ms {commit:11.2f} ms",
              flush=True)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

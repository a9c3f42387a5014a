"""`python -m worker [--agents A,B] [--concurrency N] [--loglevel L]`: the Celery worker process
itself, as `taskbench worker` runs it.

The CLI checks the jail and its options, then replaces itself with this (exec), so a running
worker carries no CLI libraries (typer, rich, the remote client's httpx): only the worker's own.
Nor Celery's own command line: `celery worker` (and `Celery.worker_main`, which runs it) loads
every celery subcommand first, `celery shell`'s REPL among them (click-repl, prompt_toolkit,
pygments: ~15 MB in the main process, inherited by each pool child). This starts the same worker
through Celery's programmatic API, `app.Worker(...).start()`.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from celery.utils.nodenames import default_nodename, host_format

from worker.tasks import celery_app


def worker_options(agents: list[str], concurrency: int, loglevel: str) -> dict[str, Any]:
    """The worker's options: its agents' queues (or the shared one), prefetch 1, no gossip."""
    queues = [f"agent.{a}" for a in agents] if agents else ["taskbench"]
    # the CLI's pid (it exec'd this process), so the name is the one it announced
    name = f"taskbench-{'-'.join(agents) or 'all'}-{os.getpid()}@%h"
    return {"queues": queues, "concurrency": concurrency, "loglevel": loglevel,
            "hostname": host_format(default_nodename(name)), "without_gossip": True,
            "without_mingle": True, "prefetch_multiplier": 1}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker")
    parser.add_argument("--agents", default="", help="comma-separated agent names")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--loglevel", default="INFO")
    args = parser.parse_args(argv)
    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    worker = celery_app.Worker(**worker_options(agents, args.concurrency, args.loglevel.upper()))
    worker.start()
    return int(worker.exitcode or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

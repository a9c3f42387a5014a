"""`python -m worker ARGS`: the Celery worker process itself, as `taskbench worker` runs it.

The CLI checks the jail and its options, then replaces itself with this (exec), so a running
worker carries no CLI libraries (typer, rich, the remote client's httpx): only the worker's own.
ARGS are Celery's `worker` arguments (app.ops.cli.service.worker_argv builds them).
"""

from __future__ import annotations

import sys

from worker.tasks import celery_app

if __name__ == "__main__":
    celery_app.worker_main(argv=sys.argv[1:])

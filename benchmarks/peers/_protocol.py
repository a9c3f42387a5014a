"""The line protocol between bench_loop and a peer script running in the peers' venv.

The benchmark drives; the peer answers one JSON line per command on its own stdout (whatever
the framework prints goes to stderr):

    peer → {"ready": {package: version}}
    bench → {"op": "run"}                        peer runs the job once → {"loop_s": seconds,
                                                 "cpu_s": the process's CPU seconds meanwhile}
    bench → {"op": "replay", "requests": [...]}  the same bodies through the bare openai client
                                                 (`post`, no request transform) → {"replay_s",
                                                 "cpu_s"}
    bench closes stdin → the peer exits

The benchmark scripts the fake server's replies before each command, so the peer never needs to
know what comes next. Standard library only: this module runs in the peers' venv.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any, TextIO

PHASES = (
    "Design: look at what the workspace holds, then finish with a plan.",
    "Build: look again where the work goes, then finish with what was built.",
    "Test: finish with what was tested.",
)


def list_folder(root: str, path: str) -> str:
    """The trivial tool every peer offers as `list_files`: the names in one folder."""
    folder = os.path.normpath(os.path.join(root, path))
    return "\n".join(sorted(os.listdir(folder))) or "(empty)"


def claim_stdout() -> TextIO:
    """The protocol's own stream; the process's fd 1 then points at stderr."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def serve(packages: list[str], run: Callable[[], float],
          replay: Callable[[list[dict[str, Any]]], float]) -> None:
    """Answer the benchmark's commands until it closes stdin."""
    out = claim_stdout()
    out.write(json.dumps({"ready": {p: version(p) for p in packages}}) + "\n")
    for line in sys.stdin:
        command = json.loads(line)
        start = time.process_time()
        if command["op"] == "run":
            answer = {"loop_s": run()}
        else:
            answer = {"replay_s": replay(command["requests"])}
        answer["cpu_s"] = time.process_time() - start
        out.write(json.dumps(answer) + "\n")

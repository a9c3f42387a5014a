"""Taskbench.

httpx's package imports its command-line client (`httpx._main`: click, rich, pygments, ~6 MB)
whenever those happen to be installed, as they are here for our own CLI. Nothing of ours runs
httpx's CLI, so its module is a stub before anything imports httpx: every process that imports
`app` (API, worker, CLI) is spared that memory. If httpx ever drops `_main`, the stub is unused.
"""

import sys
import types

if "httpx" not in sys.modules and "httpx._main" not in sys.modules:
    _stub = types.ModuleType("httpx._main", "httpx's CLI, not loaded by Taskbench")

    def _no_cli() -> None:
        raise SystemExit("the httpx command-line client is not available in this process")

    _stub.main = _no_cli  # type: ignore[attr-defined]
    sys.modules["httpx._main"] = _stub

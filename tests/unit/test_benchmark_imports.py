"""The benchmarks are not run by the suite (they time things: benchmarks/README.md), so a name
the product moved breaks one only when someone runs it: `bench_scenario` imported `run_scenario`
from where a reorganisation had moved it out, and `python -m benchmarks` failed on it. Every
name a benchmark imports from the project must still be where it looks for it."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("app", "worker", "tests", "benchmarks")


def _imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) of every `from <project module> import name` in `path`, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] in PROJECT:
            found += [(node.module, alias.name) for alias in node.names]
    return found


@pytest.mark.parametrize("bench", sorted(p.name for p in (ROOT / "benchmarks").glob("*.py")))
def test_every_name_a_benchmark_imports_is_there(bench: str) -> None:
    missing = []
    for module, name in _imports(ROOT / "benchmarks" / bench):
        loaded = importlib.import_module(module)
        if not hasattr(loaded, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                missing.append(f"{module}.{name}")
    assert missing == []

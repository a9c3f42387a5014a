"""/health asks the broker itself (a Redis PING, the embedded broker's SQLite file), so an idle
API never loads Celery and kombu (issue 15: memory), and still says when the broker is down."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from app.core.config import reset_settings
from tests.factories import REDIS_URL

ROOT = Path(__file__).resolve().parents[2]
LAZY = ["celery", "kombu", "worker.celery_app", "prometheus_client", "app.run.context"]


async def test_health_says_the_embedded_broker_is_ok(app_client):
    # given the default, embedded broker (nothing created on disk yet)
    # when /health is read
    resp = await app_client.get("/health")
    # then the broker is reachable and named as the embedded one
    assert resp.status_code == 200
    assert (resp.json()["broker"], resp.json()["broker_kind"]) == ("ok", "embedded")


async def test_health_says_a_redis_broker_is_ok(app_client, monkeypatch):
    # given a Redis broker that answers
    monkeypatch.setenv("TASKBENCH_BROKER_URL", REDIS_URL)
    reset_settings()
    # when /health is read
    resp = await app_client.get("/health")
    # then it is ok
    assert resp.status_code == 200
    assert (resp.json()["broker"], resp.json()["broker_kind"]) == ("ok", "redis")


async def test_health_is_degraded_when_the_redis_broker_refuses(app_client, monkeypatch):
    # given a Redis broker URL whose port refuses connections (bound, never listening)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        monkeypatch.setenv("TASKBENCH_BROKER_URL", f"redis://127.0.0.1:{port}/0")
        reset_settings()
        # when /health is read
        resp = await app_client.get("/health")
    # then the API says it is degraded and why, with a 503 for probes
    assert resp.status_code == 503
    assert resp.json()["status"] == "degraded"
    assert resp.json()["broker"] == "ConnectionError"


async def test_health_is_degraded_when_the_embedded_broker_file_is_not_a_database(
    app_client, env
):
    # given an embedded broker file that is not SQLite (a disk mishap)
    broker = Path(env["TASKBENCH_VAR_DIR"]) / "broker.db"
    broker.parent.mkdir(parents=True, exist_ok=True)
    broker.write_bytes(b"not a database" * 200)
    # when /health is read
    resp = await app_client.get("/health")
    # then the broker is reported unreachable
    assert resp.status_code == 503
    assert resp.json()["broker"] == "DatabaseError"


def test_an_api_that_answered_health_has_not_loaded_celery(env):
    # given a fresh interpreter serving the application in process, lifespan included
    code = (
        "import asyncio, json, sys, httpx\n"
        "from app.main import create_app\n"
        "async def main():\n"
        "    app = create_app(sweeper=False)\n"
        "    async with app.router.lifespan_context(app):\n"
        "        transport = httpx.ASGITransport(app=app)\n"
        "        async with httpx.AsyncClient(transport=transport, base_url='http://t') as c:\n"
        "            status = (await c.get('/health')).status_code\n"
        f"    print(json.dumps([status, [m for m in {LAZY!r} if m in sys.modules]]))\n"
        "asyncio.run(main())\n"
    )
    # when it has answered /health
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    # then /health was answered without Celery, kombu, prometheus_client or the run's modules
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [200, []]

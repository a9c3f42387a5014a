"""CORS for a browser front end on another origin: an allow-list from settings, off by default."""

from __future__ import annotations

import os

import httpx
import pytest
from pydantic import ValidationError

from tests.factories import auth

PREFLIGHT = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization,content-type"}


async def _client(monkeypatch: pytest.MonkeyPatch, origins: str | None) -> httpx.AsyncClient:
    from app.core.config import reset_settings
    from app.main import create_app, startup

    if origins is None:
        monkeypatch.delenv("TASKBENCH_CORS_ORIGINS", raising=False)
    else:
        monkeypatch.setenv("TASKBENCH_CORS_ORIGINS", origins)
    reset_settings()
    app = create_app(sweeper=False)
    await startup()
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                             base_url="http://test/api/v1",
                             headers=auth(os.environ["TASKBENCH_ADMIN_API_KEY"]))


async def test_cors_is_off_by_default(db, monkeypatch):
    async with await _client(monkeypatch, None) as client:
        resp = await client.get("/tasks", headers={"Origin": "https://app.example.com"})
        pre = await client.options("/tasks", headers={"Origin": "https://app.example.com",
                                                      **PREFLIGHT})
    assert resp.status_code == 200
    assert "access-control-allow-origin" not in resp.headers
    assert "access-control-allow-origin" not in pre.headers


async def test_a_listed_origin_may_call_and_others_may_not(db, monkeypatch):
    async with await _client(monkeypatch, "https://app.example.com, http://localhost:5173/") \
            as client:
        pre = await client.options("/tasks", headers={"Origin": "https://app.example.com",
                                                      **PREFLIGHT})
        listed = await client.get("/tasks", headers={"Origin": "http://localhost:5173"})
        other = await client.get("/tasks", headers={"Origin": "https://evil.example.net"})
        other_pre = await client.options("/tasks", headers={"Origin": "https://evil.example.net",
                                                            **PREFLIGHT})
    assert pre.status_code == 200
    assert pre.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "authorization" in pre.headers["access-control-allow-headers"].lower()
    assert listed.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert listed.headers["access-control-allow-credentials"] == "true"
    assert "access-control-allow-origin" not in other.headers
    assert other_pre.status_code == 400 and "access-control-allow-origin" not in other_pre.headers


async def test_a_wildcard_never_comes_with_cookies(db, monkeypatch):
    async with await _client(monkeypatch, "*") as client:
        resp = await client.get("/tasks", headers={"Origin": "https://anyone.example"})
    assert resp.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in resp.headers


@pytest.mark.parametrize("bad", ["https://app.example.com/path", "ftp://x", "*,https://a.b",
                                 "app.example.com"])
def test_a_malformed_origin_is_refused_naming_it(bad):
    from app.core.config import Settings

    with pytest.raises(ValidationError, match="cors_origins"):
        Settings(cors_origins=bad)

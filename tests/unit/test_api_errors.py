"""Bad input gets a clear error naming what is wrong: 401, 404, 413, 415, 422, 429."""

from __future__ import annotations

import pytest

from tests.conftest import auth, run_enqueued


async def test_missing_or_wrong_key_is_401(app_client):
    assert (await app_client.get("/tasks", headers={"Authorization": ""})).status_code == 401
    wrong = await app_client.get("/tasks", headers=auth("tb_wrong"))
    assert wrong.status_code == 401 and wrong.json()["detail"] == "invalid API key"


async def test_out_of_range_field_is_422_naming_it(app_client):
    resp = await app_client.post("/tasks", json={"title": "x", "complexity": 11})
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["body", "complexity"]
    resp = await app_client.post("/tasks", json={"title": "x", "budget": {"max_steps": 0}})
    assert resp.json()["detail"][0]["loc"] == ["body", "budget", "max_steps"]
    resp = await app_client.post("/tasks", json={"title": "x", "notify": {"email": ["nope"]}})
    assert resp.json()["detail"][0]["loc"][:3] == ["body", "notify", "email"]


async def test_body_over_one_mib_is_413(app_client):
    resp = await app_client.post("/tasks", json={"title": "x", "description": "y" * 1_100_000})
    assert resp.status_code == 413


async def test_unknown_ids_are_404(app_client):
    assert (await app_client.get("/tasks/999999")).status_code == 404
    assert (await app_client.get("/agents/999999")).status_code == 404
    assert (await app_client.post("/tasks/999999/cancel")).status_code == 404


async def test_rate_limit_gives_429_with_retry_after(app_client, monkeypatch):
    monkeypatch.setenv("TASKBENCH_RATE_LIMIT_PER_MINUTE", "5")
    from app.core.config import reset_settings

    reset_settings()
    codes = [(await app_client.get("/tasks")) for _ in range(8)]
    limited = [r for r in codes if r.status_code == 429]
    assert limited and int(limited[0].headers["retry-after"]) >= 1


@pytest.mark.parametrize("path", ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "/etc/passwd"])
async def test_artifact_paths_outside_output_are_refused(app_client, enqueued, llm, path):
    resp = await app_client.post("/tasks", json={"title": "t", "complexity": 1})
    await run_enqueued(enqueued)
    got = await app_client.get(f"/tasks/{resp.json()['id']}/artifacts/{path}")
    assert got.status_code == 404
    assert "root:" not in got.text


async def test_uploads_are_type_and_size_checked(app_client, monkeypatch):
    task = (await app_client.post("/tasks", json={"title": "t", "complexity": 1})).json()
    url = f"/tasks/{task['id']}/files"
    ok = await app_client.post(url, files={"files": ("data.csv", b"a,b\n1,2\n")})
    assert ok.status_code == 201 and ok.json()[0]["name"] == "data.csv"
    elf = await app_client.post(url, files={"files": ("tool.txt", b"\x7fELF....")})
    assert elf.status_code == 415
    exe = await app_client.post(url, files={"files": ("run.exe", b"MZ")})
    assert exe.status_code == 415
    monkeypatch.setenv("TASKBENCH_MAX_UPLOAD_BYTES", "1000")
    from app.core.config import reset_settings

    reset_settings()
    big = await app_client.post(url, files={"files": ("big.txt", b"x" * 5000)})
    assert big.status_code == 413

"""A task's `github` block steers host-side API calls and git: hostile repository and branch
names are a 422 naming the field, never a 500 or a request to another path."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("repo", ["../user", "a/b/c", "owner/..", "owner/.", " owner/repo",
                                  "owner/re po", "-owner/repo", "owner/", "/repo",
                                  "owner\\repo", "o" * 40 + "/repo", "owner/repo\n"])
async def test_a_hostile_repository_name_is_a_422_naming_it(app_client, repo) -> None:
    resp = await app_client.post("/tasks", json={"title": "t", "complexity": 2,
                                                 "github": {"repo": repo}})
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"][0]["loc"] == ["body", "github", "repo"]


@pytest.mark.parametrize("branch", ["../main", "a/../b", "-main", "main.lock", ".hidden",
                                    "a//b", "main/", "feature/.x"])
async def test_a_hostile_base_branch_is_a_422_naming_it(app_client, branch) -> None:
    resp = await app_client.post("/tasks", json={"title": "t", "complexity": 2, "github": {
        "repo": "owner/repo", "base_branch": branch}})
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"][0]["loc"] == ["body", "github", "base_branch"]


@pytest.mark.parametrize("repo", ["octo-org/hello.world", "a/b", "User-1/repo_name.js"])
async def test_ordinary_repository_names_pass_validation(app_client, repo) -> None:
    resp = await app_client.post("/tasks", json={"title": "t", "complexity": 2,
                                                 "github": {"repo": repo}})
    assert resp.status_code != 422 or "github" not in str(resp.json()["detail"]), resp.text

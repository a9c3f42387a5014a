"""The model provider's state: /health says whether one is configured, where it is and what the
LLM client last saw of it; a task failing for want of a key says which variable to set."""

from __future__ import annotations

import socket

import pytest

from app.core.config import reset_settings
from app.run import llm as llm_module
from tests.factories.worker import submit_and_run
from tests.fakes.llm_server import error, finish

KEY = "sk-test-" + "c" * 24


def _no_key(monkeypatch: pytest.MonkeyPatch, base_url: str | None) -> None:
    for name in ("TASKBENCH_LLM_API_KEY", "OPENROUTER_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    if base_url is None:
        monkeypatch.delenv("TASKBENCH_LLM_BASE_URL", raising=False)
    else:
        monkeypatch.setenv("TASKBENCH_LLM_BASE_URL", base_url)
    reset_settings()
    llm_module.reset_clients()


_run = submit_and_run


async def test_health_says_no_provider_is_configured_and_which_variable_to_set(
    app_client, monkeypatch
):
    # given no key and the default (OpenRouter) endpoint
    _no_key(monkeypatch, None)
    # when /health is read
    health = (await app_client.get("/health")).json()["llm"]
    # then it says the provider is not configured and how to configure it
    assert health["configured"] is False
    assert health["api_key_set"] is False
    assert health["base_url"] == "https://openrouter.ai/api/v1"
    assert "TASKBENCH_LLM_API_KEY" in health["hint"]
    assert "OPENROUTER_API_KEY" in health["hint"]
    assert health["last_error"] is None


async def test_health_reports_the_last_error_and_recovery_but_never_the_key(
    app_client, enqueued, llm
):
    # given a configured provider that refuses the first task's calls
    llm.script(error(401, "Invalid credentials"))  # a 401 ends the chain: one request
    failed = await _run(app_client, enqueued)
    # when /health is read
    resp = await app_client.get("/health")
    health = resp.json()["llm"]
    # then it names the endpoint, the key is set (not shown) and the provider's last error
    assert failed["status"] == "failed"
    assert health["configured"] is True and health["api_key_set"] is True
    assert health["base_url"] == llm.url
    assert health["last_error"].startswith("401") and "Invalid credentials" in health["last_error"]
    assert "hint" not in health
    assert KEY not in resp.text
    # and when the next task's calls are answered, recovery is recorded after the error
    llm.script(finish("ok"))
    assert (await _run(app_client, enqueued))["status"] == "completed"
    health = (await app_client.get("/health")).json()["llm"]
    assert health["last_ok_at"] > health["last_error_at"]


async def test_task_without_a_key_fails_naming_the_variables_and_the_url(
    app_client, enqueued, llm, monkeypatch
):
    # given no key and a provider that answers 401 without one, as OpenRouter does
    _no_key(monkeypatch, llm.url)
    llm.script(error(401, "No auth credentials found"), error(401, "No auth credentials found"))
    # when a task runs
    task = await _run(app_client, enqueued)
    # then its error says what the provider said, where, and which variable to set
    assert task["status"] == "failed"
    assert task["error"].startswith("LLMError: 401")
    assert "No auth credentials found" in task["error"]
    assert llm.url in task["error"]
    for variable in ("TASKBENCH_LLM_API_KEY", "OPENROUTER_API_KEY", "OPENAI_API_KEY"):
        assert variable in task["error"]


async def test_unreachable_provider_without_a_key_names_the_url_and_the_variable(
    app_client, enqueued, monkeypatch
):
    # given no key and nothing listening at the configured endpoint
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    monkeypatch.setenv("TASKBENCH_LLM_MAX_RETRIES", "0")
    _no_key(monkeypatch, closed)
    # when a task runs
    task = await _run(app_client, enqueued)
    # then the error is not a bare "Connection error.": it names the URL and the variable
    assert task["status"] == "failed"
    assert "Connection error" in task["error"]
    assert closed in task["error"] and "TASKBENCH_LLM_API_KEY" in task["error"]
    health = (await app_client.get("/health")).json()["llm"]
    assert "Connection error" in health["last_error"]

"""TASKBENCH_LLM_MODEL_MAP: the shipped agents' OpenRouter model names are sent to the provider
under the names it takes (a local Ollama or vLLM), in one place where the request is built."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.core.config import Settings, reset_settings
from tests.factories.worker import submit_and_run
from tests.fakes.llm_server import error, finish

JUNIOR = "openai/gpt-4o-mini"
JUNIOR_FALLBACK = "google/gemini-2.0-flash-001"


def _map(monkeypatch: pytest.MonkeyPatch, value: str) -> Settings:
    monkeypatch.setenv("TASKBENCH_LLM_MODEL_MAP", value)
    return reset_settings()


def test_the_map_is_json_or_pairs_and_star_maps_the_rest(monkeypatch):
    s = _map(monkeypatch, '{"openai/gpt-4o-mini": "llama3.1:8b"}')
    assert s.provider_model(JUNIOR) == "llama3.1:8b"
    assert s.provider_model("anthropic/claude-sonnet-4") == "anthropic/claude-sonnet-4"
    s = _map(monkeypatch, " openai/gpt-4o-mini = Qwen/Qwen2.5-7B-Instruct , *=qwen2.5:14b ")
    assert s.provider_model(JUNIOR) == "Qwen/Qwen2.5-7B-Instruct"
    assert s.provider_model("anthropic/claude-sonnet-4") == "qwen2.5:14b"
    for bad in ("openai/gpt-4o-mini", '{"a": ', '["a"]'):
        monkeypatch.setenv("TASKBENCH_LLM_MODEL_MAP", bad)
        with pytest.raises(ValidationError, match="llm_model_map"):
            Settings()


_run = submit_and_run


async def test_requests_carry_the_providers_model_names(app_client, enqueued, llm, monkeypatch):
    # given the junior agent's models mapped to local names, and a provider that only knows those
    _map(monkeypatch, f"{JUNIOR}=llama3.1:8b,{JUNIOR_FALLBACK}=qwen2.5:7b")
    llm.script(error(503, "overloaded"), error(503, "overloaded"), error(503, "overloaded"),
               error(503, "overloaded"), model="llama3.1:8b")
    llm.script(finish("done locally"), model="qwen2.5:7b")
    # when a task runs (its primary model fails, the fallback answers)
    task = await _run(app_client, enqueued)
    # then the provider only ever saw its own names, primary first, then the fallback
    assert task["status"] == "completed", task
    asked = [r["model"] for r in llm.requests]
    assert asked[:5] == ["llama3.1:8b"] * 4 + ["qwen2.5:7b"]
    assert not {JUNIOR, JUNIOR_FALLBACK} & set(asked)


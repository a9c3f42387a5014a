"""Resilient model calls: retries on 429 (honouring Retry-After), fallback, and failing cleanly."""

from __future__ import annotations

from tests.factories.loop import events_of
from tests.factories.worker import submit_and_run
from tests.fakes.llm_server import broken_body, delayed, error, finish, tool_call

JUNIOR = "openai/gpt-4o-mini"
JUNIOR_FALLBACK = "google/gemini-2.0-flash-001"


_run = submit_and_run


async def test_rate_limited_call_is_retried_after_retry_after(app_client, enqueued, llm):
    # given the primary model answers 429 with Retry-After once, then works
    llm.script(error(429, "slow down", retry_after=0.2), model=JUNIOR)
    # when a task runs
    task = await _run(app_client, enqueued)
    # then it completed on the same model after one retry that waited as told
    assert task["status"] == "completed", task
    retries = await events_of(app_client, task["id"], "llm_retry")
    assert [(e["data"]["model"], e["data"]["delay_s"]) for e in retries] == [(JUNIOR, 0.2)]
    assert "429" in retries[0]["data"]["error"]
    assert not await events_of(app_client, task["id"], "llm_fallback")
    assert task["model_used"] == JUNIOR


async def test_dead_primary_falls_back_to_the_next_model(app_client, enqueued, llm):
    # given the primary model is down
    llm.dead_models.add(JUNIOR)
    # when a task runs
    task = await _run(app_client, enqueued)
    # then the fallback did the work, the switch is an event and the finisher is recorded
    assert task["status"] == "completed", task
    switches = await events_of(app_client, task["id"], "llm_fallback")
    assert switches and switches[0]["data"]["from"] == JUNIOR
    assert switches[0]["data"]["to"] == JUNIOR_FALLBACK
    assert "503" in switches[0]["data"]["error"]
    assert task["model_used"] == JUNIOR_FALLBACK
    final = (await events_of(app_client, task["id"], "status"))[-1]["data"]
    assert final["finished_by"] == JUNIOR_FALLBACK


async def test_all_models_failing_fails_the_task_with_the_providers_error(
    app_client, enqueued, llm
):
    # given every model in the chain is down
    llm.dead_models.update({JUNIOR, JUNIOR_FALLBACK})
    # when a task runs
    task = await _run(app_client, enqueued)
    # then it failed with the provider's last error, after retrying each model
    assert task["status"] == "failed"
    assert task["error"].startswith("LLMError: 503")
    assert f"model {JUNIOR_FALLBACK} is down" in task["error"]
    retried = {e["data"]["model"] for e in await events_of(app_client, task["id"], "llm_retry")}
    assert retried == {JUNIOR, JUNIOR_FALLBACK}
    assert {r["model"] for r in llm.requests} == {JUNIOR, JUNIOR_FALLBACK}


async def test_wrong_arguments_become_an_observation_counted_against_the_budget(
    app_client, enqueued, llm
):
    # given a model that passes a number for a path, then an unknown argument
    llm.script(tool_call("write_file", path=1, content="x"),
               tool_call("read_file", path="a", colour="red"),
               finish("design"), finish("build"), finish("test"))
    # when the task runs
    task = await _run(app_client, enqueued)
    # then both mistakes went back to the model and each cost a step
    assert task["status"] == "completed"
    assert task["usage"]["steps"] == 5
    observations = [m["content"] for m in llm.requests[2]["messages"] if m["role"] == "tool"]
    assert "argument path of write_file must be of type string" in observations[0]
    assert "unknown argument(s) for read_file: colour" in observations[1]


async def test_a_reply_cut_mid_body_is_asked_again(app_client, enqueued, llm):
    # given a provider whose first reply's connection drops halfway through its body
    llm.script(broken_body(finish("never arrives whole")), model=JUNIOR)
    # when a task runs
    task = await _run(app_client, enqueued)
    # then the call was retried on the same model (a connection error, named as one) and the
    # task completed with the later answers
    assert task["status"] == "completed", task
    retries = await events_of(app_client, task["id"], "llm_retry")
    assert [e["data"]["model"] for e in retries] == [JUNIOR]
    assert retries[0]["data"]["error"].startswith("Connection error:"), retries
    assert task["summary"] != "never arrives whole"


async def test_an_answer_slower_than_the_timeout_is_asked_again(
        app_client, enqueued, llm, monkeypatch):
    # given a 0.5 s model timeout and a first answer that takes 3 s
    monkeypatch.setenv("TASKBENCH_LLM_TIMEOUT_S", "0.5")
    from app.core.config import reset_settings

    reset_settings()
    llm.script(delayed(3, finish("too late")), model=JUNIOR)
    # when a task runs
    task = await _run(app_client, enqueued)
    # then the slow call was given up at the timeout and asked again, saying why
    assert task["status"] == "completed", task
    retries = await events_of(app_client, task["id"], "llm_retry")
    assert len(retries) == 1
    assert "no answer within 0.5 s" in retries[0]["data"]["error"]


async def test_the_provider_is_reached_through_the_proxy_the_environment_names(
        env, llm, monkeypatch):
    """HTTP(S)_PROXY and NO_PROXY are honoured (looked up once a session, not per request)."""
    import json

    from app.core.config import get_settings, reset_settings
    from app.run import llm_http

    # given a provider whose name resolves nowhere, and a proxy that reaches it (the fake
    # takes the proxy's absolute-form request)
    proxy = llm.url.removesuffix("/v1")
    monkeypatch.setenv("TASKBENCH_LLM_BASE_URL", "http://provider.invalid/v1")
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    reset_settings()
    llm.responder = lambda _req: finish("via the proxy")
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
    # when a call is posted, then it went through the proxy
    reply = json.loads(await llm_http.post_chat(get_settings(), body))
    assert "via the proxy" in json.dumps(reply)
    assert llm_http.env_proxy("http://provider.invalid/v1") == proxy
    # and a host NO_PROXY names is reached directly
    monkeypatch.setenv("NO_PROXY", "provider.invalid")
    assert llm_http.env_proxy("http://provider.invalid/v1") is None
    await llm_http.close_clients()

"""Provider failures as real providers show them, over real HTTP: retried when they may pass,
ended with the provider's own words when they cannot, never an internal error or a hang."""

from __future__ import annotations

from app.core.config import get_settings
from app.run.llm import request_body
from tests.factories.loop import events_of
from tests.factories.worker import submit_and_run
from tests.fakes.llm_server import body_error, no_choices, raw_body

JUNIOR = "openai/gpt-4o-mini"
JUNIOR_FALLBACK = "google/gemini-2.0-flash-001"
HTML = "<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>"


_run = submit_and_run


async def _retries(app_client, task: dict) -> list[str]:
    return [e["data"]["error"] for e in await events_of(app_client, task["id"], "llm_retry")]


async def test_error_in_a_200_body_is_retried_with_the_providers_message(
    app_client, enqueued, llm
):
    # given OpenRouter's way of saying the upstream failed: HTTP 200, {"error": {code: 502}}
    llm.script(body_error(502, "Upstream provider timed out",
                          metadata={"raw": "gateway timeout"}), model=JUNIOR)
    # when a task runs
    task = await _run(app_client, enqueued)
    # then the same model was asked again, and the retry names the provider's message
    assert task["status"] == "completed", task
    expected = "502: Upstream provider timed out (gateway timeout)"
    assert await _retries(app_client, task) == [expected]
    assert task["model_used"] == JUNIOR


async def test_a_lasting_error_in_a_200_body_fails_naming_it(app_client, enqueued, llm):
    # given every model answers 200 with a non-transient error
    llm.responder = lambda _req: body_error(400, "Provider returned error: invalid tool schema")
    # when a task runs
    task = await _run(app_client, enqueued)
    # then the chain was walked without retries, and the task failed with that message
    assert task["status"] == "failed", task
    assert task["error"].startswith("LLMError: 400: Provider returned error: invalid tool schema")
    assert await _retries(app_client, task) == []
    assert [r["model"] for r in llm.requests] == [JUNIOR, JUNIOR_FALLBACK]


async def test_html_page_and_broken_json_are_retried(app_client, enqueued, llm):
    # given a gateway HTML page, then a body cut in the middle, then a good answer
    llm.script(raw_body(HTML), raw_body('{"id": "x", "choices": [{"mess', "application/json"),
               model=JUNIOR)
    # when a task runs
    task = await _run(app_client, enqueued)
    # then it completed on the same model after two retries saying what came back
    assert task["status"] == "completed", task
    errors = await _retries(app_client, task)
    assert len(errors) == 2
    assert "not a JSON object: <html><head><title>502 Bad Gateway" in errors[0]
    assert 'not a JSON object: {"id": "x"' in errors[1]


async def test_html_forever_fails_with_a_clear_error(app_client, enqueued, llm):
    # given a provider that only ever answers with an HTML page
    llm.responder = lambda _req: raw_body(HTML)
    # when a task runs
    task = await _run(app_client, enqueued)
    # then the task failed naming what came back (not "internal error"), after bounded retries
    assert task["status"] == "failed", task
    assert task["error"].startswith("LLMError: the provider's reply is not a JSON object: <html>")
    settings = get_settings()
    assert len(llm.requests) == 2 * (settings.llm_max_retries + 1)


async def test_empty_choices_are_retried(app_client, enqueued, llm):
    # given a reply with no choices, then a good one
    llm.script(no_choices(), model=JUNIOR)
    # when a task runs
    task = await _run(app_client, enqueued)
    # then it was asked again and completed
    assert task["status"] == "completed", task
    assert await _retries(app_client, task) == [f"{JUNIOR} returned no choices"]


async def test_a_refused_key_does_not_walk_the_fallback_chain(app_client, enqueued, llm):
    # given an endpoint that refuses the configured key
    llm.valid_keys = {"sk-some-other-key"}
    # when a task runs
    task = await _run(app_client, enqueued)
    # then one request was made (no retry, no fallback with the same key), error names it
    assert task["status"] == "failed", task
    assert [r["model"] for r in llm.requests] == [JUNIOR]
    assert "401" in task["error"] and "Invalid API key" in task["error"]
    assert await events_of(app_client, task["id"], "llm_fallback") == []


async def test_model_refusing_max_tokens_gets_max_completion_tokens(app_client, enqueued, llm):
    # given a model that answers 400 to `max_tokens` (as OpenAI's reasoning models do)
    llm.refuse_max_tokens.add(JUNIOR)
    # when a task runs
    task = await _run(app_client, enqueued)
    # then the refused request was sent again with max_completion_tokens, and that stuck
    assert task["status"] == "completed", task
    sent = llm.requests_for(JUNIOR)
    assert "max_tokens" in sent[0] and "max_completion_tokens" not in sent[0]
    assert all("max_completion_tokens" in r and "max_tokens" not in r for r in sent[1:])
    assert len(sent) == 4  # the refusal, then design, build, test
    assert task["model_used"] == JUNIOR


async def test_openrouter_only_fields_go_to_openrouter_only(app_client, enqueued, llm):
    # given a plain OpenAI-compatible endpoint (the fake), and an agent asking for routing
    agents = (await app_client.get("/agents")).json()["data"]
    junior = next(a for a in agents if a["name"] == "junior")
    routing = {"order": ["together"], "allow_fallbacks": False}
    await app_client.patch(f"/agents/{junior['id']}",
                           json={"config": {**junior["config"], "provider": routing}})
    # when a task runs
    task = await _run(app_client, enqueued)
    # then no request carried OpenRouter's fields
    assert task["status"] == "completed", task
    assert all("usage" not in r and "provider" not in r for r in llm.requests)
    # and the same request bound for OpenRouter carries both
    settings = get_settings().model_copy(update={"llm_base_url": "https://openrouter.ai/api/v1"})
    body = request_body(settings, JUNIOR, [], tools=None, max_tokens=10, response_format=None,
                        provider=routing)
    assert body["usage"] == {"include": True} and body["provider"] == routing

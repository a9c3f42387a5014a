"""/metrics in Prometheus text format and /api/v1/analytics, after a task really ran."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import auth, new_user_key, run_enqueued
from tests.fakes.llm_server import finish, tool_call


def parse(text: str) -> dict[str, float]:
    """Samples by `name{labels}`; fails on any line that is not valid exposition format."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        name, _, value = line.rpartition(" ")
        assert name and not line.startswith("#"), line
        samples[name] = float(value)
    return samples


async def run_one_task(app_client, enqueued, llm) -> int:
    llm.script(tool_call("write_file", path="output/a.txt", content="a"),
               tool_call("run_command", command="rm -rf /"),
               finish("plan"), finish("built"), finish("tested"))
    task_id = (await app_client.post("/tasks", json={"title": "t", "complexity": 1})).json()["id"]
    await run_enqueued(enqueued)
    return task_id


async def test_metrics_expose_tasks_llm_tools_and_queue(app_client, enqueued, llm):
    # given one finished task that used a tool and had one refused
    await run_one_task(app_client, enqueued, llm)
    # when Prometheus scrapes
    base = str(app_client.base_url).replace("/api/v1", "")
    async with httpx.AsyncClient(transport=app_client._transport, base_url=base) as raw:
        resp = await raw.get("/metrics")
    # then the figures are there, in the text format
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    got = parse(resp.text)
    assert got['taskbench_tasks{status="completed"}'] == 1
    assert got['taskbench_task_duration_seconds_count'] == 1
    assert got['taskbench_assignment_wait_seconds_bucket{le="+Inf"}'] >= 1
    model_calls = [v for k, v in got.items() if k.startswith("taskbench_llm_calls_total{")]
    assert sum(model_calls) == 5
    tokens = sum(v for k, v in got.items() if k.startswith("taskbench_llm_tokens_total{"))
    assert tokens == 5 * 15
    assert got['taskbench_tool_calls_total{tool="write_file"}'] == 1
    assert got['taskbench_tool_refusals_total{tool="run_command"}'] == 1
    assert got['taskbench_tool_refusals_total{tool="write_file"}'] == 0
    assert "taskbench_queue_depth" in got and "# TYPE taskbench_emails gauge" in resp.text
    # and successful finishes are counted by outcome
    assert got['taskbench_tasks_finished_total{status="completed"}'] == 1
    assert got['taskbench_tasks_finished_total{status="failed"}'] == 0
    # and Prometheus' own parser reads every family with its type
    kinds = {f.name: f.type for f in text_string_to_metric_families(resp.text)}
    assert kinds["taskbench_tasks_finished"] == "counter"
    assert kinds["taskbench_llm_calls"] == "counter"
    assert kinds["taskbench_task_duration_seconds"] == "histogram"
    assert kinds["taskbench_worker_tasks_in_flight"] == "gauge"


async def test_analytics_filters_by_time_and_owner(app_client, enqueued, llm):
    await run_one_task(app_client, enqueued, llm)
    everything = (await app_client.get("/analytics")).json()
    assert everything["tasks"]["by_status"] == {"completed": 1}
    assert everything["llm"][0]["calls"] == 5
    assert {t["tool"] for t in everything["tools"]} >= {"write_file", "run_command"}
    assert everything["duration_s"]["count"] == 1
    future = (await app_client.get("/analytics", params={"since": "2999-01-01T00:00:00Z"})).json()
    assert future["tasks"]["count"] == 0 and future["llm"] == []
    other = await app_client.get("/analytics", headers=auth(await new_user_key("o@example.com")))
    assert other.json()["tasks"]["count"] == 0

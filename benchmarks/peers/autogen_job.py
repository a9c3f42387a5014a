"""The bench_loop job through AutoGen AgentChat: an AssistantAgent with OpenAIChatCompletionClient.

    python autogen_job.py BASE_URL API_KEY WORKSPACE         (run by bench_loop in the peers' venv)

Three runs on one agent (it keeps its model context between runs), one per phase. With
`max_tool_iterations` above the job's length the agent calls the model again after each tool
call until a reply has no tool call, so a phase is its `list_files` calls and one plain-text
answer: 8 tool calls and 3 answers, 11 model calls, as our loop. The floor replays the same
bodies through a bare AsyncOpenAI client, which is what the model client uses.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import httpx2
import openai
from _protocol import PHASES, list_folder, serve
from autogen_agentchat.agents import AssistantAgent
from autogen_ext.models.openai import OpenAIChatCompletionClient

BASE_URL, API_KEY, ROOT = sys.argv[1:4]


async def list_files(path: str) -> str:
    """List the files in a folder of the workspace (path relative to its root)."""
    return list_folder(ROOT, path)


loop = asyncio.new_event_loop()
model_client = OpenAIChatCompletionClient(model="gpt-4o-mini", base_url=BASE_URL,
                                          api_key=API_KEY, max_retries=0)
bare = openai.AsyncOpenAI(base_url=BASE_URL, api_key=API_KEY, max_retries=0)


async def job() -> float:
    start = time.perf_counter()
    agent = AssistantAgent("worker", model_client=model_client, tools=[list_files],
                           max_tool_iterations=20)
    for prompt in PHASES:
        await agent.run(task=prompt)
    return time.perf_counter() - start


async def replayed(requests: list[dict[str, Any]]) -> float:
    total = 0.0
    for body in requests:
        start = time.perf_counter()
        response = await bare.post("/chat/completions", body=body, cast_to=httpx2.Response)
        json.loads(await response.aread())
        total += time.perf_counter() - start
    return total


serve(["autogen-agentchat", "autogen-ext", "openai"],
      lambda: loop.run_until_complete(job()),
      lambda requests: loop.run_until_complete(replayed(requests)))

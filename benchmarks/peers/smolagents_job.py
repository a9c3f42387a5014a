"""The bench_loop job through smolagents: a ToolCallingAgent with OpenAIServerModel.

    python smolagents_job.py BASE_URL API_KEY WORKSPACE      (run by bench_loop in the peers' venv)

Three runs on one agent (`reset=False` keeps the conversation), one per phase, each ending with
the `final_answer` tool: 8 `list_files` calls and 3 final answers, 11 model calls, as our loop.
Logging is off (its rich panels would cost time our loop does not spend on printing). The floor
replays the same bodies through a bare synchronous openai client, which is what the model uses.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import httpx2
import openai
from _protocol import PHASES, list_folder, serve
from smolagents import LogLevel, OpenAIServerModel, ToolCallingAgent, tool

BASE_URL, API_KEY, ROOT = sys.argv[1:4]


@tool
def list_files(path: str) -> str:
    """List the files in a folder of the workspace.

    Args:
        path: the folder, relative to the workspace root
    """
    return list_folder(ROOT, path)


model = OpenAIServerModel(model_id="gpt-4o-mini", api_base=BASE_URL, api_key=API_KEY,
                          client_kwargs={"max_retries": 0})
bare = openai.OpenAI(base_url=BASE_URL, api_key=API_KEY, max_retries=0)


def run() -> float:
    start = time.perf_counter()
    agent = ToolCallingAgent(tools=[list_files], model=model, max_steps=20,
                             verbosity_level=LogLevel.OFF)
    for index, prompt in enumerate(PHASES):
        agent.run(prompt, reset=index == 0)
    return time.perf_counter() - start


def replay(requests: list[dict[str, Any]]) -> float:
    total = 0.0
    for body in requests:
        start = time.perf_counter()
        response = bare.post("/chat/completions", body=body, cast_to=httpx2.Response)
        json.loads(response.read())
        total += time.perf_counter() - start
    return total


serve(["smolagents", "openai"], run, replay)

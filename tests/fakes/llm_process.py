"""ScriptedLLM (tests/fakes/llm_server.py) served from a process of its own.

In the benchmark's process the fake provider's threads take the GIL from the loop being
measured: while it answers, the loop cannot run, so work the loop overlaps with the model call
(a step write on its way to the database) shows as if it were not overlapped. A real provider
answers from another machine. Here the same scripted server answers from a child process;
the benchmark drives it as it drove the in-process one (`script`, `reset`, `requests`,
`queues`, `url`), each call a message over a pipe.

    with ScriptedLLMProcess() as llm:
        llm.script(tool_call("list_files"), finish("ok"))
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.connection import Connection
from typing import Any

from tests.fakes.llm_server import Response, ScriptedLLM


def _serve(pipe: Connection) -> None:
    llm = ScriptedLLM().start()
    pipe.send(llm.url)
    try:
        while True:
            command, args = pipe.recv()
            if command == "stop":
                return
            if command == "script":
                responses, model = args
                llm.script(*responses, model=model)
                pipe.send(None)
            elif command == "reset":
                llm.reset()
                pipe.send(None)
            elif command == "requests":
                pipe.send(list(llm.requests))
            elif command == "queues":
                pipe.send({model: list(queue) for model, queue in llm.queues.items()})
    finally:
        llm.stop()


class ScriptedLLMProcess:
    """The scripted server in a child process, driven from this one."""

    def __init__(self) -> None:
        self._pipe: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self.url = ""

    def start(self) -> ScriptedLLMProcess:
        ours, theirs = multiprocessing.get_context("fork").Pipe()
        self._process = multiprocessing.get_context("fork").Process(
            target=_serve, args=(theirs,), daemon=True)
        self._process.start()
        self._pipe = ours
        self.url = ours.recv()
        return self

    def _ask(self, command: str, args: Any = None) -> Any:
        assert self._pipe is not None, "not started"
        self._pipe.send((command, args))
        return self._pipe.recv()

    def script(self, *responses: Response, model: str | None = None) -> ScriptedLLMProcess:
        self._ask("script", (list(responses), model))
        return self

    def reset(self) -> None:
        self._ask("reset")

    @property
    def requests(self) -> list[dict[str, Any]]:
        return list(self._ask("requests"))

    @property
    def queues(self) -> dict[str | None, list[Response]]:
        return dict(self._ask("queues"))

    def stop(self) -> None:
        if self._pipe is not None:
            self._pipe.send(("stop", None))
            self._pipe = None
        if self._process is not None:
            self._process.join(5)
            if self._process.is_alive():
                self._process.kill()
            self._process = None

    def __enter__(self) -> ScriptedLLMProcess:
        return self.start()

    def __exit__(self, *_exc: Any) -> None:
        self.stop()

"""Peers for bench_loop: the same job through smolagents and AutoGen, in a venv of their own.

    venv()                     the peers' venv, made once from tests/locks/peers.txt (figures
                               are only comparable between runs of the same versions; openai
                               as ours) and cached; its path is printed
    measure(peer, llm, n)      run one peer's job n + 1 times against the scripted server (the
                               first warms up and is dropped), each run followed by a replay of
                               the requests it made through the bare openai client in that venv

The job scripts (smolagents_job.py, autogen_job.py) run only in that venv, as child processes
that the benchmark drives over a line protocol (_protocol.py); nothing here is imported by app.
The fake server's replies are scripted per run for each framework's own tool names: 8
`list_files` calls split over three phases, each phase ended the framework's way.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORK_PATHS = ("src", "output", "research", ".")
STEPS = 11  # model calls in one run of the job, as in ours


@dataclass(frozen=True)
class Peer:
    name: str      # as printed
    script: str    # in this folder
    finish: str    # how a phase ends: the "final_answer" tool, or a reply with no tool call


PEERS = (
    Peer("smolagents", "smolagents_job.py", "final_answer"),
    Peer("autogen", "autogen_job.py", "text"),
)


def venv() -> Path:
    """The peers' venv, made once from its lock (tests/locks/peers.txt), then reused."""
    from tests.factories.venvs import locked_venv

    print("peers' venv: tests/locks/peers.txt (made once, then cached)", flush=True)
    home = locked_venv("peers")
    print(f"peers' venv: {home}", flush=True)
    return home


def script_replies(llm: Any, peer: Peer) -> None:
    """The fake server's 11 replies for one run of `peer`'s job."""
    from tests.fakes.llm_server import text, tool_call

    def finish(summary: str) -> dict[str, Any]:
        return (tool_call("final_answer", answer=summary) if peer.finish == "final_answer"
                else text(summary))

    work = [tool_call("list_files", path=p) for p in WORK_PATHS] * 2
    llm.script(*work[:5], finish("planned"), *work[5:], finish("built"), finish("tested"))


class _Job:
    """One peer's job script, running in the peers' venv, driven over its protocol."""

    def __init__(self, home: Path, peer: Peer, base_url: str, workspace: Path) -> None:
        self.proc = subprocess.Popen(
            [str(home / "bin" / "python"), str(HERE / peer.script), base_url,
             "sk-bench-" + "p" * 24, str(workspace)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"})
        self.versions: dict[str, str] = self._read()["ready"]

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the peer's job script exited ({self.proc.wait()})")
        return dict(json.loads(line))

    def ask(self, **command: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def measure(home: Path, peer: Peer, llm: Any, n_tasks: int) -> dict[str, Any]:
    """Loop and replay times of `n_tasks` runs of the peer's job (after one warm-up run)."""
    with tempfile.TemporaryDirectory() as workspace:
        for folder in WORK_PATHS[:-1]:
            (Path(workspace) / folder).mkdir()
        job = _Job(home, peer, llm.url, Path(workspace))
        loops, replays, loop_cpu, replay_cpu = [], [], [], []
        try:
            for _ in range(n_tasks + 1):
                llm.reset()
                script_replies(llm, peer)
                ran = job.ask(op="run")
                loops.append(ran["loop_s"])
                loop_cpu.append(ran["cpu_s"])
                sent = list(llm.requests)
                if len(sent) != STEPS or llm.queues.get(None):
                    raise RuntimeError(f"{peer.name} made {len(sent)} model calls, not {STEPS}")
                llm.reset()
                script_replies(llm, peer)
                replayed = job.ask(op="replay", requests=sent)
                replays.append(replayed["replay_s"])
                replay_cpu.append(replayed["cpu_s"])
        finally:
            job.close()
    return {"loop": loops[1:], "replay": replays[1:], "loop_cpu": loop_cpu[1:],
            "replay_cpu": replay_cpu[1:], "versions": job.versions}

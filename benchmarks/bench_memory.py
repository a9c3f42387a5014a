"""Idle memory of a worker and of the API, each beside a bare peer started in the same run.

    worker   `taskbench worker` (product defaults: prefork pool, --concurrency 2) on the embedded
             SQLite database and broker, measured once it has registered its heartbeat, beside a
             bare Celery worker with one no-op task and the same pool and concurrency.
    api      `taskbench api` on the same database, measured once /health answered, beside a bare
             FastAPI app with one route under the same uvicorn.

Figures per process tree: RSS of the main process (what `ps` shows and what the issue's target
names), RSS of the largest pool child, and PSS summed over the tree (shared pages counted once
across the fork, so it is what the tree really costs the machine).

    python -m benchmarks.bench_memory [--settle 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
TARGET_MB = 100


def taskbench_cmd() -> list[str]:
    """The installed console script, found in the interpreter's own scripts folder."""
    script = Path(sysconfig.get_path("scripts")) / "taskbench"
    return [str(script)] if script.exists() else [shutil.which("taskbench") or "taskbench"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = (task / "children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        for kid in kids:
            out.append(int(kid))
            out.extend(_children(int(kid)))
    return out


def measure(pid: int) -> dict[str, float]:
    kids = _children(pid)
    tree = [pid, *kids]
    return {
        "main_rss": _status_kb(pid, "VmRSS") / 1024,
        "child_rss": max((_status_kb(k, "VmRSS") for k in kids), default=0) / 1024,
        "tree_pss": sum(_pss_kb(p) for p in tree) / 1024,
        "procs": len(tree),
    }


def start(cmd: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_until(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise SystemExit(f"{what} did not become ready within {timeout:.0f}s")


def wait_http(url: str, timeout: float = 60) -> None:
    def ok() -> bool:
        try:
            return httpx.get(url, timeout=2).status_code < 500
        except httpx.HTTPError:
            return False

    wait_until(ok, timeout, url)


def wait_log(log: Path, needle: str, timeout: float = 60) -> None:
    wait_until(lambda: needle in log.read_text(errors="replace"), timeout, f"'{needle}' in {log}")


BARE_CELERY = textwrap.dedent("""
    from celery import Celery
    app = Celery("bare", broker="filesystem://", backend=None)
    app.conf.broker_transport_options = {
        "data_folder_in": "{q}", "data_folder_out": "{q}", "processed_folder": "{q}",
    }
    @app.task
    def noop():
        return None
""")

BARE_API = textwrap.dedent("""
    from fastapi import FastAPI
    app = FastAPI()
    @app.get("/health")
    def health():
        return {"status": "ok"}
""")


def row(name: str, ours: dict[str, float], bare: dict[str, float]) -> None:
    verdict = "met" if ours["main_rss"] <= TARGET_MB else "NOT met"
    print(f"{name:<7} main RSS {ours['main_rss']:6.1f} MB (bare {bare['main_rss']:5.1f})   "
          f"largest child {ours['child_rss']:6.1f} MB (bare {bare['child_rss']:5.1f})   "
          f"tree PSS {ours['tree_pss']:6.1f} MB over {ours['procs']:.0f} procs "
          f"(bare {bare['tree_pss']:5.1f} over {bare['procs']:.0f})   "
          f"target ≤ {TARGET_MB} MB: {verdict}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settle", type=float, default=3.0,
                    help="seconds to wait after readiness before measuring")
    ap.add_argument("--concurrency", type=int, default=2, help="worker pool size (default 2)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TASKBENCH_VAR_DIR": str(tmp / "var"),
        "TASKBENCH_WORKSPACES_DIR": str(tmp / "workspaces"),
        "TASKBENCH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/taskbench.db",
        "TASKBENCH_BROKER_URL": "",
        "TASKBENCH_ENVIRONMENT": "test",
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run([*taskbench_cmd(), "migrate"], env=env, cwd=tmp, check=True,
                       capture_output=True)
        # Ours and the bare peers one after the other: two cores, nothing else of ours running.
        worker = start([*taskbench_cmd(), "worker", "--concurrency", str(args.concurrency)],
                       env, tmp, tmp / "worker.log")
        procs.append(worker)
        wait_log(tmp / "worker.log", "ready")
        time.sleep(args.settle)
        ours_worker = measure(worker.pid)
        stop(worker)

        queue = tmp / "bare" / "q"
        queue.mkdir(parents=True)
        (tmp / "bare" / "bare_celery.py").write_text(BARE_CELERY.replace("{q}", str(queue)))
        (tmp / "bare" / "bare_api.py").write_text(BARE_API)
        bare_env = {**env, "PYTHONPATH": str(tmp / "bare")}
        bare = start([sys.executable, "-m", "celery", "-A", "bare_celery", "worker",
                      "--pool", "prefork", f"--concurrency={args.concurrency}", "--loglevel=INFO"],
                     bare_env, tmp / "bare", tmp / "bare_worker.log")
        procs.append(bare)
        wait_log(tmp / "bare_worker.log", "ready")
        time.sleep(args.settle)
        bare_worker = measure(bare.pid)
        stop(bare)

        port = free_port()
        api = start([*taskbench_cmd(), "api", "--host", "127.0.0.1", "--port", str(port)],
                    env, tmp, tmp / "api.log")
        procs.append(api)
        wait_http(f"http://127.0.0.1:{port}/health")
        time.sleep(args.settle)
        ours_api = measure(api.pid)
        stop(api)

        port = free_port()
        bare_api = start([sys.executable, "-m", "uvicorn", "bare_api:app", "--host", "127.0.0.1",
                          "--port", str(port)], bare_env, tmp / "bare", tmp / "bare_api.log")
        procs.append(bare_api)
        wait_http(f"http://127.0.0.1:{port}/health")
        time.sleep(args.settle)
        bare_api_m = measure(bare_api.pid)
        stop(bare_api)

        print(f"idle memory (settle {args.settle:.0f} s, worker --concurrency {args.concurrency})")
        row("worker", ours_worker, bare_worker)
        row("api", ours_api, bare_api_m)
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

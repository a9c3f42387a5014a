"""Deliverables benchmark: report rendering time and outbox email throughput.

    python -m benchmarks.bench_deliver

1. Render the report of a task with 200 events and 3 charts (target: ≤ 2 s).
2. Deliver N emails through the outbox (claim → sending → DATA → sent, each state committed)
   to a local aiosmtpd server, beside aiosmtplib sending the same messages directly.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

N_EMAILS = 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _configure(tmp: Path, smtp_port: int) -> None:
    os.environ.update(
        {
            "TASKBENCH_VAR_DIR": str(tmp / "var"),
            "TASKBENCH_WORKSPACES_DIR": str(tmp / "ws"),
            "TASKBENCH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'bench.db'}",
            "TASKBENCH_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}?starttls=0",
            "TASKBENCH_PUBLIC_URL": "http://taskbench.local",
        }
    )


async def bench_report(engine, settings) -> tuple[list[float], list[float]]:
    from app.integrations.report import render_task_report
    from tests.unit.deliver_fixtures import (
        add_events,
        bar_chart_svg,
        create_task,
        png_image,
        sample_events,
    )

    task = await create_task(engine, settings)
    events = sample_events(n_tools=96, n_citations=4)[:200]
    await add_events(engine, task.id, events)
    out = Path(task.workspace) / "output"
    (out / "chart1.svg").write_text(bar_chart_svg([20, 50, 80, 35]))
    (out / "chart2.svg").write_text(bar_chart_svg([90, 10, 60]))
    (out / "chart3.png").write_bytes(png_image(600, 300))
    times, cpu = [], []
    for _ in range(3):
        start, start_cpu = time.perf_counter(), time.process_time()
        await render_task_report(task.id, settings=settings, engine=engine)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return times, cpu


async def bench_outbox(engine, settings) -> float:
    from app.core.db import session_scope
    from app.integrations.outbox import enqueue_agent_mail, flush_pending
    from tests.unit.deliver_fixtures import create_task

    task = await create_task(engine, settings, status="build")
    async with session_scope(engine) as session:
        for i in range(N_EMAILS):
            await enqueue_agent_mail(
                session,
                task_id=task.id,
                to=f"user{i}@example.com",
                subject=f"Note {i}",
                body="Hello " * 50,
                attach=[],
                settings=settings,
            )
    start = time.perf_counter()
    sent = 0
    while sent < N_EMAILS:
        sent += await flush_pending(100, settings=settings, engine=engine)
    return N_EMAILS / (time.perf_counter() - start)


async def bench_direct(port: int) -> float:
    import aiosmtplib

    start = time.perf_counter()
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) as smtp:
        for i in range(N_EMAILS):
            msg = EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = "tb@localhost", f"u{i}@example.com", "x"
            msg.set_content("Hello " * 50)
            await smtp.send_message(msg)
    return N_EMAILS / (time.perf_counter() - start)


async def main() -> None:
    from aiosmtpd.controller import Controller

    from app.core.config import reset_settings
    from app.core.db import make_engine
    from app.ops.migrate import upgrade

    class Sink:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            return "250 OK"

    port = _free_port()
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    with tempfile.TemporaryDirectory() as tmpdir:
        _configure(Path(tmpdir), port)
        settings = reset_settings()
        await asyncio.to_thread(upgrade, settings.db_url)
        engine = make_engine(settings.db_url)
        try:
            times, cpu = await bench_report(engine, settings)
            through_outbox = await bench_outbox(engine, settings)
            direct = await bench_direct(port)
        finally:
            await engine.dispose()
            controller.stop()
    print(
        f"report, 200 events + 3 charts : median {statistics.median(times):.2f} s "
        f"wall, {statistics.median(cpu):.2f} s CPU (target ≤ 2 s)"
    )
    print(f"emails via outbox (SQLite)    : {through_outbox:7.1f} msg/s")
    print(f"emails via aiosmtplib directly: {direct:7.1f} msg/s  (baseline, one connection)")


if __name__ == "__main__":
    asyncio.run(main())

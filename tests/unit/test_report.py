"""PDF reports: real PDFs checked with pypdf, and rendering that never fetches anything."""

# ruff: noqa: F811  (pytest fixtures imported from deliver_fixtures are re-bound as arguments)
from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pypdf
import pytest

from app.integrations.pdf import ResourceRefused, SafeFetcher
from app.integrations.report import ensure_report, render_markdown_report, render_task_report
from tests.unit.deliver_fixtures import (  # noqa: F401  (fixtures)
    add_events,
    bar_chart_svg,
    create_task,
    engine,
    png_image,
    sample_events,
    settings,
)


def pdf_text(path: Path) -> tuple[int, str]:
    reader = pypdf.PdfReader(str(path))
    text = "\n".join(page.extract_text() or "" for page in reader.pages)
    return len(reader.pages), text


def squash(text: str) -> str:
    """Text without whitespace: PDF extraction wraps long URLs anywhere."""
    return "".join(text.split())


@pytest.fixture
def counting_server() -> Iterator[dict]:
    """A loopback HTTP server that counts every request it receives."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(png_image())

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{server.server_address[1]}", "hits": hits}
    server.shutdown()
    server.server_close()


async def test_completed_task_report_has_summary_citations_and_page_numbers(engine, settings):
    # given a completed task with searches, citations and long tool outputs
    task = await create_task(
        engine, settings, review={"score": 8, "verdict": "pass", "findings": ["Sources are cited"]}
    )
    await add_events(engine, task.id, sample_events(n_tools=3, n_citations=4))

    # when its report is rendered
    path = await render_task_report(task.id, settings=settings, engine=engine)

    # then it is a real PDF with the summary, the verdict, every citation and page numbers
    pages, text = pdf_text(path)
    assert pages >= 2
    assert "Matplotlib wins on breadth." in text
    assert "Inspector's verdict" in text and "Sources are cited" in text
    for i in range(4):
        assert f"https://docs.example.org/page-{i}" in squash(text)
    assert "python charting libraries" in text
    assert f"Page 1 of {pages}" in text
    assert "Contents" in text and "Timeline" in text
    assert "truncated" in text  # 5000-character tool outputs are clipped with a note
    assert path.parent == settings.var_dir / "reports"  # outside the agent's workspace


async def test_failed_task_report_says_why(engine, settings):
    # given a failed task
    task = await create_task(
        engine, settings, status="failed", summary=None, error="Budget exceeded: 50 steps"
    )

    # when
    path = await render_task_report(task.id, settings=settings, engine=engine)

    # then
    _, text = pdf_text(path)
    assert "failed" in text
    assert "Budget exceeded: 50 steps" in text


async def test_charts_in_output_are_embedded(engine, settings):
    # given a task that left a PNG and an SVG chart in output/
    task = await create_task(engine, settings)
    output = Path(task.workspace) / "output"
    (output / "chart.png").write_bytes(png_image(120, 60))
    (output / "bars.svg").write_text(bar_chart_svg([30, 60, 90]))

    # when
    path = await render_task_report(task.id, settings=settings, engine=engine)

    # then the PNG is an image in the PDF and both files are listed with artifact links
    reader = pypdf.PdfReader(str(path))
    assert sum(len(page.images) for page in reader.pages) >= 1
    text = squash("\n".join(p.extract_text() for p in reader.pages))
    assert "output/chart.png" in text and "output/bars.svg" in text


async def test_report_never_fetches_remote_or_host_files(engine, settings, counting_server):
    # given agent content pointing at a loopback server and at /etc/passwd, by every route
    remote = f"{counting_server['url']}/secret.png"
    task = await create_task(
        engine,
        settings,
        summary=(
            f'See ![chart]({remote}) and ![pw](file:///etc/passwd) <img src="{remote}?raw"> done.'
        ),
    )
    output = Path(task.workspace) / "output"
    (output / "evil.svg").write_text(
        bar_chart_svg(
            [10],
            extra=(
                f'<image xlink:href="{remote}?svg" width="5" height="5"/>'
                '<image xlink:href="file:///etc/passwd" width="5" height="5"/>'
            ),
        )
    )
    os.symlink("/etc/passwd", output / "passwd.png")
    markdown = f"# Findings\n\n![a]({remote}?md)\n\n![b](file:///etc/passwd)\n\n![c](../../x.png)"

    # when both kinds of report are rendered
    task_pdf = await render_task_report(task.id, settings=settings, engine=engine)
    md_pdf = render_markdown_report(
        "Findings", markdown, workspace_root=Path(task.workspace), out=output / "findings.pdf"
    )

    # then both render, nothing reached the server and no host file leaked in
    for path in (task_pdf, md_pdf):
        _, text = pdf_text(path)
        assert "root:" not in text
    _, text = pdf_text(task_pdf)
    assert "done." in text
    assert counting_server["hits"] == []


def test_safe_fetcher_refuses_everything_outside_its_roots(tmp_path):
    # given a workspace with a real file and a symlink out of it
    root = tmp_path / "ws"
    root.mkdir()
    (root / "ok.png").write_bytes(png_image())
    os.symlink("/etc/passwd", root / "link.png")
    fetcher = SafeFetcher([root])

    # then only the real file inside the root is served
    assert fetcher.fetch((root / "ok.png").as_uri()).read() == png_image()
    for url in (
        "file:///etc/passwd",
        (root / "link.png").as_uri(),
        "http://127.0.0.1:1/x",
        "https://example.org/x.png",
        "ftp://127.0.0.1/x",
        f"file://evil.host{root}/ok.png",
    ):
        with pytest.raises(ResourceRefused):
            fetcher.fetch(url)


async def test_ensure_report_renders_on_demand_then_reuses(engine, settings):
    # given a finished task without a report
    task = await create_task(engine, settings)

    # when it is asked for twice
    first = await ensure_report(task.id, settings=settings, engine=engine)
    mtime = first.stat().st_mtime_ns
    second = await ensure_report(task.id, settings=settings, engine=engine)

    # then it is rendered once and reused
    assert first == second and second.stat().st_mtime_ns == mtime


def test_markdown_report_renders_tables_and_escapes_html(tmp_path):
    out = tmp_path / "output" / "r.pdf"
    md = "# Title\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n<script>alert(1)</script>\n"
    render_markdown_report("My report", md, workspace_root=tmp_path, out=out)
    _, text = pdf_text(out)
    assert "My report" in text and "<script>alert(1)</script>" in text

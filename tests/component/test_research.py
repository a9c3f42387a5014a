"""Research beyond HTML, end to end: the agent fetches a PDF, reads it and cites it; the PDF
report lists the source with the number the agent was told to use."""

from __future__ import annotations

import pypdf
import pytest

from app.core.config import reset_settings
from app.integrations.report import ensure_report
from tests.factories.loop import Router, events_of, requests_about
from tests.factories.worker import submit_and_run
from tests.fakes.llm_server import finish, tool_call
from tests.fakes.web_server import WebServer


@pytest.fixture
def web():
    srv = WebServer().start()
    yield srv
    srv.stop()


async def test_a_fetched_pdf_is_read_and_cited_in_the_report(app_client, enqueued, llm, web,
                                                              monkeypatch):
    # given a model that fetches a PDF, then finishes citing it
    monkeypatch.setenv("TASKBENCH_FETCH_ALLOW_HOSTS", f'["127.0.0.1:{web.port}"]')
    reset_settings()
    llm.responder = Router().script(
        "figures", tool_call("fetch_url", url=web.url("/report.pdf")),
        finish("Revenue grew 12 percent in Q3 [1]."))

    # when the task runs
    task = await submit_and_run(app_client, enqueued, title="figures")

    # then the model read the PDF's text (not its bytes) with the number to cite
    assert task["status"] == "completed", task
    after_fetch = [r for r in requests_about(llm.requests, "figures")
                   if any(m.get("role") == "tool" for m in r["messages"])][0]
    tool_text = [m["content"] for m in after_fetch["messages"] if m.get("role") == "tool"][0]
    assert "Revenue grew 12 percent" in tool_text and "cite it as [1]" in tool_text
    assert "%PDF" not in tool_text
    cites = await events_of(app_client, task["id"], "citation")
    assert cites[0]["data"]["kind"] == "pdf" and cites[0]["data"]["n"] == 1
    # and the report lists the source as [1], with its type and where it was saved
    path = await ensure_report(task["id"])
    text = " ".join(p.extract_text() for p in pypdf.PdfReader(str(path)).pages)
    flat = " ".join(text.split())
    assert "[1] Quarterly figures" in flat and web.url("/report.pdf") in flat
    assert "pdf, saved as research/001-quarterly-figures.pdf" in flat

"""The dashboard in a real browser (Debian chromium via Playwright): sign in, submit, watch the
timeline fill live, open the report, cancel a second task. Screenshots go to test-artifacts/."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from tests.factories import run_enqueued
from tests.fakes.llm_server import delayed, finish, tool_call
from tests.live_server import live_server

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ADMIN_KEY = "tb_admin_" + "a" * 32

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason="needs Debian chromium")


@pytest.fixture
async def browser():
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        await browser.close()


async def sign_in(page, url: str) -> None:
    await page.goto(f"{url}/login")
    await page.fill("input[name=api_key]", ADMIN_KEY)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{url}/tasks")


async def submit(page, title: str) -> str:
    await page.fill("#submit-form input[name=title]", title)
    await page.fill("#submit-form input[name=complexity]", "1")
    await page.click("#submit-form button[type=submit]")
    await page.wait_for_url("**/tasks/*")
    return page.url.rsplit("/", 1)[1]


async def test_sign_in_submit_watch_live_report_and_cancel(db, enqueued, llm, browser):
    SHOTS.mkdir(exist_ok=True)
    llm.script(delayed(0.4, tool_call("write_file", path="output/hello.txt", content="hi")),
               delayed(0.4, finish("planned")), delayed(0.4, finish("built")),
               delayed(0.4, finish("tested")))
    with live_server() as url:
        page = await browser.new_page()
        # a wrong key is refused, the right one signs in
        await page.goto(f"{url}/login")
        await page.fill("input[name=api_key]", "tb_wrong")
        await page.click("button[type=submit]")
        assert "not accepted" in await page.inner_text(".error")
        await sign_in(page, url)
        cookie = next(c for c in await page.context.cookies() if c["name"] == "tb_session")
        assert cookie["httpOnly"] and ADMIN_KEY not in cookie["value"]
        # when a task is submitted and the worker runs it while the page is open
        task_id = await submit(page, "Say hello")
        await page.wait_for_selector("#live:text('live')")
        await page.evaluate("window.__sameDocument = true")
        before = await page.locator("#timeline li").count()
        await asyncio.wait_for(run_enqueued(enqueued), 60)
        await page.wait_for_selector("#task-status:text('completed')", timeout=20_000)
        await page.wait_for_selector("#files a:text('hello.txt')", timeout=10_000)
        await page.screenshot(path=str(SHOTS / "task-live.png"), full_page=True)
        # then the timeline filled without a reload, one row per event, in order
        assert await page.evaluate("window.__sameDocument") is True
        seqs = [int(s) for s in await page.locator("#timeline li").evaluate_all(
            "els => els.map(e => e.dataset.seq)")]
        assert len(seqs) > before and seqs == list(range(1, len(seqs) + 1))
        # the report opens and the file downloads through the session
        report = await page.request.get(f"{url}/tasks/{task_id}/report.pdf")
        assert report.status == 200 and (await report.body()).startswith(b"%PDF")
        got = await page.request.get(f"{url}/tasks/{task_id}/files/hello.txt")
        assert await got.text() == "hi"
        # a second task is cancelled from its page
        await page.goto(f"{url}/tasks")
        await submit(page, "Cancel me")
        await page.click("#cancel-form button")
        await page.wait_for_selector("#task-status:text('cancelled')")
        await page.screenshot(path=str(SHOTS / "task-cancelled.png"), full_page=True)
        # agents and workers pages render
        await page.goto(f"{url}/agents")
        assert await page.locator("#agents tbody tr").count() >= 1
        await page.screenshot(path=str(SHOTS / "agents.png"), full_page=True)
        await page.goto(f"{url}/workers")
        assert await page.locator("#workers").count() == 1


async def test_forms_without_csrf_token_are_refused(db, enqueued, browser):
    with live_server() as url:
        page = await browser.new_page()
        await sign_in(page, url)
        forged = await page.request.post(f"{url}/tasks", form={"title": "x", "csrf": "nope"})
        assert forged.status == 403
        signed_out = await browser.new_page()
        await signed_out.goto(f"{url}/tasks")
        assert signed_out.url.endswith("/login")


async def test_scenario_graph_gains_edges_live(db, enqueued, llm, browser):
    """The scenario page's SVG graph grows turn by turn while the run plays, without a reload."""
    import httpx

    from tests.factories.scenario import THREE, CastResponder, move

    SHOTS.mkdir(exist_ok=True)
    # given a cast that ties one more pair each turn (Ann–Bob start tied), slowly enough to see
    ties = {("Ann", 1): move("Bob", "Evening, Bob."), ("Ann", 2): move("Cy", "Cy, wash up."),
            ("Bob", 3): move("Cy", "I'll help, Cy.")}
    cast = CastResponder()
    for name in ("Ann", "Bob", "Cy"):
        cast.plans[name] = lambda turn, _req, name=name: delayed(0.4, ties.get(
            (name, turn), move(None, action="silent", content="", mood=None)))
    llm.responder = cast
    with live_server() as url:
        async with httpx.AsyncClient(base_url=f"{url}/api/v1",
                                     headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as api:
            assert (await api.post("/templates/scenarios", json=THREE)).status_code == 201
            started = await api.post("/scenarios/three/runs", json={"seed": 1})
            assert started.status_code == 201, started.text
        task_id = started.json()["task_id"]
        page = await browser.new_page()
        await sign_in(page, url)
        await page.goto(f"{url}/scenarios/runs/{task_id}")
        # every edge count the graph is drawn with, in order
        await page.evaluate("""() => {
            window.__sameDocument = true; window.__edges = [];
            const svg = document.getElementById('graph');
            new MutationObserver(() => window.__edges.push(Number(svg.dataset.edges)))
              .observe(svg, {attributes: true, attributeFilter: ['data-edges']});
        }""")
        # when the worker side plays the run while the page is open
        await asyncio.wait_for(run_enqueued(enqueued), 90)
        await page.wait_for_selector("#task-status:text('completed')", timeout=20_000)
        await page.wait_for_function("document.getElementById('graph').dataset.edges === '3'",
                                     timeout=20_000)
        await page.screenshot(path=str(SHOTS / "scenario-live.png"), full_page=True)
        # then the graph gained its edges one turn at a time, in the same document
        assert await page.evaluate("window.__sameDocument") is True
        counts = await page.evaluate("window.__edges")
        assert counts == sorted(counts) and {1, 2, 3} <= set(counts), counts
        pairs = await page.locator("#graph line.edge").evaluate_all(
            "els => els.map(e => [e.dataset.a, e.dataset.b].sort().join('-'))")
        assert sorted(pairs) == ["Ann-Bob", "Ann-Cy", "Bob-Cy"]
        assert await page.locator("#graph g.node").count() == 3
        assert "Evening, Bob." in await page.inner_text("#transcript")

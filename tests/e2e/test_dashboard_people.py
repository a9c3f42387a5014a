"""The dashboard in a real browser: an edit's diff appears live in the timeline, and a question
waits in the inbox until it is answered there. Screenshots go to test-artifacts/."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from tests.conftest import run_enqueued
from tests.e2e.test_dashboard import CHROMIUM, SHOTS, browser, sign_in, submit  # noqa: F401
from tests.fakes.llm_server import delayed, finish, tool_call
from tests.live_server import live_server

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason="needs Debian chromium")


async def test_edit_diff_shows_live_in_the_timeline(db, enqueued, llm, browser):  # noqa: F811
    SHOTS.mkdir(exist_ok=True)
    llm.script(delayed(0.3, tool_call("write_file", path="src/app.py", content="x = 1\n")),
               delayed(0.3, tool_call("edit_file", path="src/app.py", old="x = 1", new="x = 2")),
               delayed(0.3, finish("planned")), finish("built"), finish("tested"))
    with live_server() as url:
        page = await browser.new_page()
        await sign_in(page, url)
        await submit(page, "Edit live")
        await page.wait_for_selector("#live:text('live')")
        # when the worker runs the task while the page is open
        await asyncio.wait_for(run_enqueued(enqueued), 60)
        await page.wait_for_selector("#task-status:text('completed')", timeout=20_000)
        # then the edit's diff arrived with its event, coloured line by line
        added = page.locator("#timeline li.ev-tool_call pre.diff span.d-add")
        removed = page.locator("#timeline li.ev-tool_call pre.diff span.d-del")
        assert await added.all_inner_texts() == ["+x = 2"]
        assert await removed.all_inner_texts() == ["-x = 1"]
        await page.screenshot(path=str(SHOTS / "task-diff.png"), full_page=True)


async def test_question_waits_in_the_inbox_and_is_answered_there(
    db, enqueued, llm, browser  # noqa: F811
):
    llm.script(tool_call("ask_user", question="Metric or imperial?"))
    with live_server() as url:
        page = await browser.new_page()
        await sign_in(page, url)
        task_id = await submit(page, "Units")
        await asyncio.wait_for(run_enqueued(enqueued), 60)
        # the task list shows the open question with an answer box
        await page.goto(f"{url}/tasks")
        item = page.locator(f"#inbox li[data-task='{task_id}']")
        assert "Metric or imperial?" in await item.inner_text()
        await page.screenshot(path=str(SHOTS / "inbox.png"), full_page=True)
        # when it is answered from the inbox
        await item.locator("input[name=content]").fill("Metric")
        await item.locator("button").click()
        await page.wait_for_url(f"**/tasks/{task_id}")
        # then the task went back to the queue and the inbox is empty
        assert await page.inner_text("#task-status") in ("pending", "assigned")
        await page.goto(f"{url}/tasks")
        assert await page.locator("#inbox").count() == 0

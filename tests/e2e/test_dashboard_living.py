"""Living mode on the observatory page in a real browser (issue 16): start it with a daily
budget, see the rounds the sweep runs, pause and resume with the buttons, and a bad budget is
named as the API names it. Screenshot in test-artifacts/."""

from __future__ import annotations

import shutil

import pytest

from app.ops.sweeper import living_rounds
from tests.e2e.test_dashboard import CHROMIUM, SHOTS, browser, sign_in  # noqa: F401
from tests.e2e.test_dashboard_ecosystems import api_client
from tests.factories import run_enqueued
from tests.factories.scenario import CastResponder, make_ecosystem, move
from tests.live_server import live_server

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason="needs Debian chromium")


async def test_living_mode_is_started_paused_and_resumed(db, enqueued, llm, browser):  # noqa: F811
    SHOTS.mkdir(exist_ok=True)
    cast = CastResponder()
    cast.plans["Ann"] = [move("Bob", "Lovely morning.", "chat", 0.5)]
    cast.plans["Bob"] = [move("Ann", "It is, Ann.", "chat", 0.4)]
    llm.responder = cast
    with live_server() as url:
        async with api_client(url) as api:
            eco = (await make_ecosystem(api, ["Ann", "Bob"]))["id"]
        page = await browser.new_page()
        await sign_in(page, url)
        await page.goto(f"{url}/ecosystems/{eco}")
        living = page.locator("#living")
        await page.wait_for_selector("#living[data-status=off]")

        # a budget of nothing is refused, named as the API names it
        await page.fill("#living-form input[name=turns]", "")
        await page.click("#living-form button[type=submit]")
        await page.wait_for_selector("#living-problems li")
        assert (await page.inner_text("#living-problems")).startswith("body.budget")

        # when living mode is started with 6 turns a day and no wait between rounds
        await page.fill("#living-form input[name=turns]", "6")
        await page.fill("#living-form input[name=minutes]", "0")
        await page.click("#living-form button[type=submit]")
        await page.wait_for_selector("#living[data-status=on]")
        assert await page.locator("#living-form").is_hidden()

        # and the sweep runs a round (the default round: 3 turns of an ordinary day)
        await living_rounds()
        await run_enqueued(enqueued)
        await living_rounds()
        await page.reload()
        await page.wait_for_selector("#living[data-status=on]")
        assert "1 round(s) so far, today 3 of 6 turns" in await page.inner_text("#living-state")

        # then Pause stops rounds, and Resume starts them again
        await living.locator("button[data-act=pause]").click()
        await page.wait_for_selector("#living[data-status=paused]")
        await living_rounds()
        assert not enqueued
        await living.locator("button[data-act=resume]").click()
        await page.wait_for_selector("#living[data-status=on]")
        await living_rounds()
        assert len(enqueued) == 1
        await page.reload()
        await page.wait_for_selector("#living[data-status=on]")
        assert "Round #" in await page.inner_text("#living-state")
        await page.screenshot(path=str(SHOTS / "observatory-living.png"), full_page=True)

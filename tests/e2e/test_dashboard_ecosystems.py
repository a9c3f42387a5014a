"""The ecosystem pages in a real browser (issue 16): the observatory draws an ecosystem's graph
with labels that never overlap, a click on a character opens its panel (traits, mood, ties,
memories from the API), and another user's ecosystem is a 404. Screenshots go to
test-artifacts/."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from tests.e2e.test_dashboard import ADMIN_KEY, CHROMIUM, SHOTS, browser, sign_in  # noqa: F401
from tests.factories import new_user_key, run_enqueued
from tests.factories.scenario import CastResponder, make_ecosystem, move, start_in_ecosystem
from tests.live_server import live_server

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason="needs Debian chromium")

# long names side by side on the circle: their labels would collide if drawn where they fall
CAST = ["Ann", "Bob", "Bartholomew Quill", "Constance Harrow", "Dorothea Brooke", "Ezekiel Marsh",
        "Fenwick Montgomery", "Gwendolyn Ashby", "Hildegard Vane", "Ignatius Pell",
        "Josephine March", "Kit"]

LABELS_OVERLAP = """() => {
  const boxes = [...document.querySelectorAll('#graph text.label')].map(t => t.getBBox());
  const hits = [];
  boxes.forEach((a, i) => boxes.slice(i + 1).forEach((b, j) => {
    if (a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height)
      hits.push([i, i + 1 + j]);
  }));
  return {count: boxes.length, hits};
}"""


@asynccontextmanager
async def api_client(url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{url}/api/v1",
                                 headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        yield client


async def test_observatory_graph_panel_and_labels(db, enqueued, llm, browser):  # noqa: F811
    SHOTS.mkdir(exist_ok=True)
    cast = CastResponder()
    cast.plans["Ann"] = [move("Bob", "Morning, Bob.", "greeting", 0.6, "cheerful"),
                         move("Bob", "Help me with the nets?", "collaboration", 0.8, "busy")]
    cast.plans["Bob"] = [move("Ann", "Morning, Ann.", "chat", 0.5, "sleepy")]
    llm.responder = cast
    with live_server() as url:
        # given an ecosystem of twelve where Ann and Bob have played one run
        async with api_client(url) as api:
            eco = await make_ecosystem(api, CAST)
            run = await start_in_ecosystem(api, eco["id"])
        await run_enqueued(enqueued)
        page = await browser.new_page()
        await sign_in(page, url)

        # when the observatory is opened from the ecosystems list
        await page.click("a:text('Ecosystems')")
        await page.click(f"#ecosystems tr[data-ecosystem='{eco['id']}'] a:text('Harbour')")
        await page.wait_for_function(
            "() => document.getElementById('graph').dataset.nodes === '12'")

        # then every label is drawn and none overlaps another
        drawn = await page.evaluate(LABELS_OVERLAP)
        assert drawn == {"count": 12, "hits": []}, drawn
        assert await page.locator("#graph line.edge").count() == 1
        assert await page.inner_text("dd[data-stat=characters]") == "12"
        assert await page.inner_text("dd[data-stat=interactions]") == "4"
        assert await page.get_attribute("#trust-chart", "data-points") == "2"
        assert "Help me with the nets?" in await page.inner_text("#feed")
        assert await page.locator(f"#runs tr[data-run='{run}']").count() == 1
        assert await page.locator("#legend").is_visible()

        # when Ann's circle is clicked
        await page.click("#graph g.node[data-name='Ann'] circle")

        # then her panel shows her traits, mood, strongest tie and memories of the run
        panel = page.locator("#node-panel")
        await page.wait_for_selector("#node-memories li:not(.muted)")
        assert await panel.locator("h2").inner_text() == "Ann"
        assert await page.inner_text("#node-state") == "Emotional state: busy"
        agreeable = panel.locator("#node-traits tr[data-trait=agreeableness] td").last
        assert await agreeable.inner_text() == "0.70"
        assert (await page.inner_text("#node-ties")).startswith("Bob: strength +")
        assert "Morning, Bob." in await page.inner_text("#node-memories")
        assert await page.locator("#graph g.node.selected").get_attribute("data-name") == "Ann"
        await page.screenshot(path=str(SHOTS / "observatory.png"), full_page=True)

        # and another user gets a 404 for this ecosystem, page and API alike
        other_key = await new_user_key("someone@example.com")
        other = await browser.new_page()
        await other.goto(f"{url}/login")
        await other.fill("input[name=api_key]", other_key)
        await other.click("button[type=submit]")
        await other.wait_for_url(f"{url}/tasks")
        answer = await other.goto(f"{url}/ecosystems/{eco['id']}")
        assert answer is not None and answer.status == 404
        answer = await other.goto(f"{url}/ecosystems/{eco['id']}/director")
        assert answer is not None and answer.status == 404
        await other.goto(f"{url}/ecosystems")
        assert "No ecosystem yet." in await other.inner_text("#ecosystems")

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


async def test_director_validates_live_starts_pauses_forks_and_compares(
    db, enqueued, llm, browser  # noqa: F811
):
    import asyncio
    import json

    from tests.component.test_director_api import Gate
    from tests.fakes.llm_server import text

    SHOTS.mkdir(exist_ok=True)
    gate = Gate("Bob", 2)
    cast = CastResponder()

    def plan(name: str, other: str):  # type: ignore[no-untyped-def]
        def reply(turn: int, _request: dict):  # type: ignore[no-untyped-def,type-arg]
            gate.hold(name, turn)
            return move(other, f"{name} at turn {turn}", "collaboration", 0.6)
        return reply

    cast.plans["Ann"], cast.plans["Bob"] = plan("Ann", "Bob"), plan("Bob", "Ann")
    cast.analyst = lambda final, _req: text(json.dumps({
        "summary": "The nets got mended.",
        "objectives": [{"objective": "Mend the nets", "met": True}]}))
    llm.responder = cast
    with live_server() as url:
        async with api_client(url) as api:
            eco = await make_ecosystem(api, ["Ann", "Bob", "Cy"])
        page = await browser.new_page()
        await sign_in(page, url)
        await page.goto(f"{url}/ecosystems/{eco['id']}")
        await page.click("a:text('Direct a scenario here')")
        await page.wait_for_selector("#validity:text('Not valid yet')")

        # when a scenario is composed with a bad turn count and one cast member
        await page.fill("input[name=title]", "Nets at dawn")
        await page.fill("textarea[name=setting]", "The pier at dawn; the nets are torn.")
        await page.fill("textarea[name=objectives]", "Mend the nets")
        await page.fill("input[name=turns]", "0")
        await page.check(".cast-row[data-character='Ann'] input[type=checkbox]")

        # then the API's problems appear live beside their fields, named as the API names them
        turns = page.locator("small.problem[data-loc='body.definition.turns']")
        await turns.wait_for()
        assert "turns out of range" in await turns.inner_text()
        assert "invalid" in (await page.get_attribute("input[name=turns]", "class") or "")
        cast_problem = page.locator("small.problem[data-loc='body.definition.characters']")
        await cast_problem.wait_for()
        assert "at least 2" in await cast_problem.inner_text()
        listed = await page.locator("#problems li").all_inner_texts()
        assert any(t.startswith("body.definition.turns: turns out of range") for t in listed)
        assert await page.is_disabled("#start")
        await page.screenshot(path=str(SHOTS / "director-problems.png"), full_page=True)

        # when the problems are fixed
        await page.fill("input[name=turns]", "3")
        await page.check(".cast-row[data-character='Bob'] input[type=checkbox]")
        await page.fill("input[name=role][data-for='Bob']", "net mender")
        await page.wait_for_selector("#validity:text('Valid: 3 turns, cast Ann, Bob')")
        assert await page.locator("small.problem").count() == 0

        # and the run is started, and paused while it plays turn 2
        await page.click("#start")
        await page.wait_for_selector("#run-panel:not([hidden])")
        run = int((await page.inner_text("#run-link")).lstrip("#"))
        worker = asyncio.ensure_future(run_enqueued(enqueued))
        assert await asyncio.to_thread(gate.entered.wait, 60)
        await page.click("#pause")
        await page.wait_for_selector("#run-status:text('paused')", timeout=20_000)
        assert await asyncio.wait_for(worker, 60) == ["paused"]
        gate.released.set()
        assert await page.is_disabled("#pause")

        # then it resumes and plays to the end
        await page.click("#resume")
        await page.wait_for_selector("#run-message:text('Resumed.')")
        await asyncio.wait_for(run_enqueued(enqueued), 60)
        await page.wait_for_selector("#run-status:text('completed')", timeout=20_000)
        await page.wait_for_selector("#run-turn:text('3')")

        # when it is forked from turn 1 and a batch of two seeds is run
        await page.fill("#fork-turn", "1")
        await page.click("#fork")
        await page.wait_for_selector("#forks li")
        await page.fill("#batch-n", "2")
        await page.click("#batch")
        await page.wait_for_selector("#run-message:text('Batch of 2 seeds started.')")
        await asyncio.wait_for(run_enqueued(enqueued), 90)

        # then the outcomes of the run and its two seeds are compared in a table
        await page.wait_for_function(
            "() => [...document.querySelectorAll('#outcomes tbody tr td:nth-child(3)')]"
            ".map(td => td.textContent).join() === 'completed,completed,completed'",
            timeout=20_000)
        rows = await page.locator("#outcomes tbody tr").all_inner_texts()
        assert str(run) in rows[0] and all("met" in r for r in rows), rows
        assert "Mend the nets" in await page.inner_text("#outcomes thead")
        assert (await page.inner_text("#outcome-summary")).startswith("3 of 3 runs completed")
        await page.screenshot(path=str(SHOTS / "director-outcomes.png"), full_page=True)
        # and the run's definition opens again in the composer, Bob's role included
        await page.goto(f"{url}/ecosystems/{eco['id']}/director?run={run}")
        await page.wait_for_selector("#validity:text('Valid: 3 turns')")
        assert await page.input_value("input[name=title]") == "Nets at dawn"
        assert await page.input_value("input[name=role][data-for='Bob']") == "net mender"
        assert await page.is_checked(".cast-row[data-character='Bob'] input[type=checkbox]")
        assert not await page.is_checked(".cast-row[data-character='Cy'] input[type=checkbox]")
        # and a shipped template opens in the composer, its own cast kept as more fields
        await page.select_option("#load-template", "workplace_negotiation")
        await page.wait_for_selector(
            "#validity:text('Valid: 5 turns, cast Dana, Marcus, Priya, Tom')")
        assert '"characters"' in await page.input_value("textarea[name=more]")
        # with Ann cast beside them, the cast grows; a broken "more" is named before sending
        await page.check(".cast-row[data-character='Ann'] input[type=checkbox]")
        await page.wait_for_selector("#validity:text('cast Dana, Marcus, Priya, Tom, Ann')")
        await page.fill("textarea[name=more]", "{not json")
        await page.wait_for_selector("#problems li[data-loc='more']:has-text('not valid JSON')")


async def test_participant_speaks_and_the_answer_shows_live(db, enqueued, llm, browser):  # noqa: F811
    import asyncio

    from tests.component.test_director_api import Gate
    from tests.factories.scenario import HARBOUR

    SHOTS.mkdir(exist_ok=True)
    gate = Gate("Bob", 1)  # the run waits in turn 1 while the participant speaks

    def ann(turn: int, request: dict):  # type: ignore[no-untyped-def,type-arg]
        if "A visitor" in request["messages"][1]["content"]:
            return move("user", "Of course, take two.", "support", 0.9, "generous")
        return move("Bob", f"Nets, Bob (turn {turn}).", "chat", 0.3)

    def bob(turn: int, _request: dict):  # type: ignore[no-untyped-def,type-arg]
        gate.hold("Bob", turn)
        return move("Ann", f"Aye (turn {turn}).", "chat", 0.3)

    cast = CastResponder()
    cast.plans["Ann"], cast.plans["Bob"] = ann, bob
    llm.responder = cast
    with live_server() as url:
        async with api_client(url) as api:
            eco = await make_ecosystem(api, ["Ann", "Bob"])
            run = await start_in_ecosystem(api, eco["id"], {**HARBOUR, "turns": 3})
        page = await browser.new_page()
        await sign_in(page, url)
        await page.goto(f"{url}/scenarios/runs/{run}")
        await page.evaluate("window.__sameDocument = true")
        worker = asyncio.ensure_future(run_enqueued(enqueued))
        assert await asyncio.to_thread(gate.entered.wait, 60)
        await page.wait_for_selector("#transcript li[data-actor='Ann']:has-text('turn 1')")

        # when the participant speaks to Ann while the run is in turn 1
        await page.select_option("#speak select[name=to]", "Ann")
        await page.fill("#speak textarea[name=content]", "Can you spare a fish?")
        await page.click("#speak button[type=submit]")
        await page.wait_for_selector("#speak-status:text('Said to Ann')")
        await page.wait_for_selector("#waiting-messages li:has-text('Can you spare a fish?')")
        gate.released.set()
        await asyncio.wait_for(worker, 90)

        # then at turn 2 the message, Ann's answer and the tie it moved appear in the transcript
        answer = page.locator("#transcript li[data-actor='Ann'][data-target='user']")
        await answer.wait_for(timeout=20_000)
        assert "[turn 2] Ann → user: Of course, take two." in await answer.inner_text()
        tie = await answer.locator("span.ties[data-with='user']").inner_text()
        assert tie.startswith("tie with user: strength 0.") and "(+0." in tie, tie
        said = page.locator("#transcript li.t-user_message")
        assert await said.inner_text() == "[turn 2] You (user) → Ann: Can you spare a fish?"
        await page.wait_for_selector("#task-status:text('completed')", timeout=20_000)
        assert await page.evaluate("window.__sameDocument") is True
        await page.screenshot(path=str(SHOTS / "participant.png"), full_page=True)
        # and once the run has ended there is nobody to speak to
        assert await page.locator("#participant").count() == 0

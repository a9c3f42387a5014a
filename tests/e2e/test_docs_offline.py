"""/docs renders in a real browser that may reach nothing but Taskbench itself."""

from __future__ import annotations

import shutil

import pytest

from tests.e2e.test_dashboard import ARGS, CHROMIUM, browser  # noqa: F401  (fixture)
from tests.live_server import live_server

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason="needs Debian chromium")


@pytest.mark.parametrize(("page", "ready"), [
    ("/docs", "#swagger-ui .info .title"),
    ("/redoc", "redoc h1"),
])
async def test_docs_render_with_every_outside_request_refused(db, browser, page, ready):  # noqa: F811
    with live_server() as url:
        tab = await browser.new_page()
        outside: list[str] = []

        async def only_local(route):
            if route.request.url.startswith(url):
                await route.continue_()
            else:
                outside.append(route.request.url)
                await route.abort()

        await tab.route("**/*", only_local)
        # when the docs page is opened with the internet cut off
        await tab.goto(f"{url}{page}")
        title = await tab.locator(ready).first.inner_text(timeout=20_000)
        # then it rendered the API's own description and asked for nothing outside
        assert "Taskbench" in title
        assert outside == []

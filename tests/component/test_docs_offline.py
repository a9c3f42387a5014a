"""/docs and /redoc work offline: their pages name no external host and every script, style and
icon they reference is served by Taskbench itself."""

from __future__ import annotations

from html.parser import HTMLParser

import httpx
import pytest

from app.main import create_app


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href", "spec-url") and v]


@pytest.fixture
async def client():
    transport = httpx.ASGITransport(app=create_app(sweeper=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_reference_only_local_assets_that_are_served(client, page):
    # given the docs page
    resp = await client.get(page)
    assert resp.status_code == 200
    refs = _Refs()
    refs.feed(resp.text)
    # then it names no external host at all, and the browser may fetch from nowhere else (the
    # ReDoc bundle itself holds a CDN logo URL)
    assert "http://" not in resp.text and "https://" not in resp.text
    csp = resp.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "img-src 'self' data:" in csp
    assert refs.urls and not [u for u in refs.urls if u.startswith("//") or "://" in u]
    scripts = [u for u in refs.urls if u.endswith(".js")]
    assert scripts and all(u.startswith("/docs-assets/") for u in scripts)
    # and every asset it references is served here, with a type a browser will use
    for url in refs.urls:
        asset = await client.get(url)
        assert asset.status_code == 200, url
        if url.endswith(".js"):
            assert "javascript" in asset.headers["content-type"] and len(asset.content) > 100_000
        if url.endswith(".css"):
            assert asset.headers["content-type"].startswith("text/css")


async def test_swagger_oauth_redirect_page_is_local(client):
    resp = await client.get("/docs/oauth2-redirect")
    assert resp.status_code == 200 and "https://" not in resp.text

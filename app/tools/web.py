"""web_search and fetch_url: the agent's only ways to the web, both on the host side.

fetch_url vets every hop with netguard, connects to the vetted IP only (Host header and TLS SNI
carry the name, so certificates are still checked against it), reads at most
`settings.fetch_max_bytes`, saves the page under research/ and records a citation event.
web_search uses ddgs (DuckDuckGo) or SearxNG, rate limited per task and cached.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from app.sandbox import fs
from app.sandbox.netguard import Target, UrlRefused, vet_url
from app.tools.commands import refuse
from app.tools.errors import ToolError
from app.tools.htmltext import html_to_text
from app.tools.registry import ToolContext, ToolResult, tool
from app.tools.search import search

MAX_REDIRECTS = 5
SHOWN_CHARS = 8000
USER_AGENT = "Taskbench/0.1 (+research fetch)"


def _pinned_url(t: Target) -> str:
    """The hop's URL with the vetted IP in place of the name (so no second DNS lookup)."""
    parts = urlsplit(t.url)
    ip = f"[{t.ip}]" if ":" in t.ip else t.ip
    return urlunsplit((t.scheme, f"{ip}:{t.port}", parts.path or "/", parts.query, ""))


async def _get(client: httpx.AsyncClient, t: Target, cap: int) -> tuple[httpx.Response, bytes]:
    host_header = t.host if t.port in (80, 443) else f"{t.host}:{t.port}"
    req = client.build_request("GET", _pinned_url(t), headers={"Host": host_header},
                               extensions={"sni_hostname": t.host})
    resp = await client.send(req, stream=True)
    body = bytearray()
    try:
        async for chunk in resp.aiter_raw():
            body += chunk
            if len(body) > cap:
                del body[cap:]
                break
    finally:
        await resp.aclose()
    return resp, bytes(body)


async def _fetch(ctx: ToolContext, url: str) -> tuple[str, httpx.Response, bytes]:
    resolver = ctx.services.resolver
    cap = ctx.settings.fetch_max_bytes
    transport = ctx.services.http_transport
    async with httpx.AsyncClient(timeout=ctx.settings.fetch_timeout_s, follow_redirects=False,
                                 headers={"User-Agent": USER_AGENT}, transport=transport,
                                 trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            target = await vet_url(url, ctx.settings.fetch_allow_hosts, resolver)
            resp, body = await _get(client, target, cap)
            location = resp.headers.get("location")
            if resp.is_redirect and location:
                url = urljoin(url, location)
                continue
            return url, resp, body
    raise ToolError(f"more than {MAX_REDIRECTS} redirects")


def _save(ctx: ToolContext, url: str, title: str, text: str, raw: bytes, html: bool) -> str:
    """The page under research/, through fs (a research/ link is refused, never followed)."""
    root = ctx.workspace.root
    fs.makedirs(root, "research")
    number = sum(1 for e in fs.listdir(root, "research") if e.name.endswith(".txt")) + 1
    slug = re.sub(r"[^a-z0-9]+", "-", (title or urlsplit(url).netloc).lower()).strip("-")[:50]
    base = f"{number:03d}-{slug or 'page'}"
    fs.write_text(root, f"research/{base}.txt", f"{title}\n{url}\n\n{text}\n")
    if html:
        fs.write_bytes(root, f"research/{base}.html", raw)
    return f"research/{base}.txt"


@tool(
    "fetch_url",
    "Fetch a public web page (http/https), save its readable text under research/ and "
    "record it as a citation.",
    {"properties": {"url": {"type": "string"}}, "required": ["url"]},
)
async def fetch_url(ctx: ToolContext, url: str) -> ToolResult:
    try:
        final_url, resp, body = await _fetch(ctx, url)
    except UrlRefused as exc:
        raise await refuse(ctx, "fetch_url", str(exc)) from exc
    except httpx.HTTPError as exc:
        raise ToolError(f"fetch failed: {type(exc).__name__}: {exc}") from exc
    ctype = resp.headers.get("content-type", "")
    decoded = body.decode(resp.encoding or "utf-8", errors="replace")
    is_html = "html" in ctype or decoded.lstrip()[:15].lower().startswith(("<!doctype", "<html"))
    # parsing up to fetch_max_bytes of HTML is CPU work: off the event loop
    title, text = (await asyncio.to_thread(html_to_text, decoded)) if is_html else ("", decoded)
    title = title or final_url
    path = await asyncio.to_thread(_save, ctx, final_url, title, text, body, is_html)
    fetched_at = datetime.now(UTC).isoformat()
    await ctx.emit("citation", {"url": final_url, "title": title, "fetched_at": fetched_at,
                                "path": path})
    shown = text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "\n…[cut; full text in file]"
    data: dict[str, Any] = {"url": final_url, "status": resp.status_code, "bytes": len(body),
                            "path": path, "title": title}
    return ToolResult(f"{title}\n{final_url} (HTTP {resp.status_code}, saved to {path})\n\n"
                      f"{shown}", data)


@tool(
    "web_search",
    "Search the web; returns titles, URLs and snippets. Fetch pages with fetch_url.",
    {
        "properties": {"query": {"type": "string"},
                       "max_results": {"type": "integer", "description": "1-20, default 8"}},
        "required": ["query"],
    },
)
async def web_search(ctx: ToolContext, query: str, max_results: int | None = None) -> ToolResult:
    query = " ".join(query.split())[:400]
    if not query:
        raise ToolError("query is empty")
    count = min(max(int(max_results or 8), 1), 20)
    backend, results, cached = await search(ctx, query, count)
    await ctx.emit("search", {"query": query, "backend": backend, "results": results})
    lines = [f"{i}. {r['title']}\n   {r['url']}\n   {r['snippet']}"
             for i, r in enumerate(results, 1)]
    return ToolResult("\n".join(lines) or "no results",
                      {"backend": backend, "count": len(results), "cached": cached})

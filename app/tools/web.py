"""web_search and fetch_url: the agent's only ways to the web, both on the host side.

fetch_url vets every hop with netguard, connects to the vetted IP only (Host header and TLS SNI
carry the name, so certificates are still checked against it), reads at most
`settings.fetch_max_bytes` within a total deadline of `settings.fetch_timeout_s` (a server
dripping bytes cannot hold it longer), makes the body readable by what it is (HTML main text,
PDF pages, JSON and CSV previews, binaries described, never dumped: app.tools.documents), saves
the original and its text under research/ and records a numbered citation event.
web_search uses ddgs (DuckDuckGo) or SearxNG, rate limited per task and cached.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from app.sandbox import fs
from app.sandbox.netguard import Target, UrlRefused, vet_url
from app.tools.commands import refuse
from app.tools.documents import extract, sha256
from app.tools.errors import ToolError
from app.tools.registry import ToolContext, ToolResult, tool
from app.tools.search import search

if TYPE_CHECKING:
    import httpx

MAX_REDIRECTS = 5
SHOWN_CHARS = 8000
USER_AGENT = "Taskbench/0.1 (+research fetch)"


def _pinned_url(t: Target) -> str:
    """The hop's URL with the vetted IP in place of the name (so no second DNS lookup)."""
    parts = urlsplit(t.url)
    ip = f"[{t.ip}]" if ":" in t.ip else t.ip
    return urlunsplit((t.scheme, f"{ip}:{t.port}", parts.path or "/", parts.query, ""))


async def _get(client: httpx.AsyncClient, t: Target, cap: int
               ) -> tuple[httpx.Response, bytes, bool]:
    host_header = t.host if t.port in (80, 443) else f"{t.host}:{t.port}"
    req = client.build_request("GET", _pinned_url(t), headers={"Host": host_header},
                               extensions={"sni_hostname": t.host})
    resp = await client.send(req, stream=True)
    body = bytearray()
    cut = False
    try:
        async for chunk in resp.aiter_bytes():
            body += chunk
            if len(body) > cap:
                del body[cap:]
                cut = True
                break
    finally:
        await resp.aclose()
    return resp, bytes(body), cut


async def _fetch(ctx: ToolContext, url: str) -> tuple[str, httpx.Response, bytes, bool]:
    resolver = ctx.services.resolver
    cap = ctx.settings.fetch_max_bytes
    transport = ctx.services.http_transport
    import httpx  # loaded by the first fetch, not by every idle worker

    async with httpx.AsyncClient(timeout=ctx.settings.fetch_timeout_s, follow_redirects=False,
                                 headers={"User-Agent": USER_AGENT}, transport=transport,
                                 trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            target = await vet_url(url, ctx.settings.fetch_allow_hosts, resolver)
            resp, body, cut = await _get(client, target, cap)
            location = resp.headers.get("location")
            if resp.is_redirect and location:
                url = urljoin(url, location)
                continue
            return url, resp, body, cut
    raise ToolError(f"more than {MAX_REDIRECTS} redirects")


def _save(ctx: ToolContext, url: str, title: str, text: str, raw: bytes, ext: str) -> tuple[
        str, str | None, int]:
    """The text (and the original, unless it is plain text) under research/, through fs (a
    research/ link is refused, never followed); names come from a counter and a cleaned slug,
    never from the server. Returns (text path, original's path, citation number)."""
    root = ctx.workspace.root
    fs.makedirs(root, "research")
    number = sum(1 for e in fs.listdir(root, "research") if e.name.endswith(".txt")) + 1
    slug = re.sub(r"[^a-z0-9]+", "-", (title or urlsplit(url).netloc).lower()).strip("-")[:50]
    base = f"{number:03d}-{slug or 'page'}"
    fs.write_text(root, f"research/{base}.txt", f"{title}\n{url}\n\n{text}\n")
    original = None
    if ext != "txt":
        original = f"research/{base}.{ext}"
        fs.write_bytes(root, original, raw)
    return f"research/{base}.txt", original, number


@tool(
    "fetch_url",
    "Fetch a public URL (http/https): web pages as their main text, PDFs as text by page, "
    "JSON and CSV as previews, other files described; saves it under research/ and records a "
    "numbered citation to cite as [n].",
    {"properties": {"url": {"type": "string"}}, "required": ["url"]},
)
async def fetch_url(ctx: ToolContext, url: str) -> ToolResult:
    deadline = ctx.settings.fetch_timeout_s
    import httpx

    try:
        async with asyncio.timeout(deadline):
            final_url, resp, body, cut = await _fetch(ctx, url)
    except UrlRefused as exc:
        raise await refuse(ctx, "fetch_url", str(exc)) from exc
    except TimeoutError:
        raise ToolError(f"fetch did not finish within {deadline:g} s (the total deadline for "
                        "one fetch, redirects included)") from None
    except httpx.HTTPError as exc:
        raise ToolError(f"fetch failed: {type(exc).__name__}: {exc}") from exc
    page = await asyncio.to_thread(extract, body, resp.headers.get("content-type", ""),
                                   resp.encoding, final_url)
    title = page.title or final_url
    notes = [page.note] if page.note else []
    if cut:
        notes.append(f"only the first {len(body)} bytes were read (the size cap)")
    text_path, original, number = await asyncio.to_thread(
        _save, ctx, final_url, title, page.text, body, page.ext)
    digest = sha256(body)
    fetched_at = datetime.now(UTC).isoformat()
    await ctx.emit("citation", {
        "n": number, "url": final_url, "requested_url": url, "title": title,
        "fetched_at": fetched_at, "path": text_path, "original": original,
        "content_type": page.media_type, "kind": page.kind, "bytes": len(body),
        "sha256": digest, "truncated": cut})
    text = page.text
    shown = text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "\n…[cut; full text in file]"
    saved = f"{text_path}" + (f" and {original}" if original else "")
    head = (f"[{number}] {title}\n{final_url} (HTTP {resp.status_code}, {page.kind}, "
            f"{len(body)} bytes; saved to {saved}; cite it as [{number}])")
    if notes:
        head += "\nNote: " + "; ".join(notes) + "."
    data: dict[str, Any] = {"url": final_url, "status": resp.status_code, "bytes": len(body),
                            "path": text_path, "original": original, "title": title,
                            "kind": page.kind, "citation": number}
    return ToolResult(f"{head}\n\n{shown}", data)


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

"""Search backends (ddgs, SearxNG), the per-task rate limit and the result cache.

The cache and the rate limit live in Redis when `settings.pubsub_redis_url` is set (shared by
all workers), else in-process for the rate limit and a SQLite file under `settings.var_dir`
for the cache. No table of the service's database is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sqlite3
import time
from collections import defaultdict, deque
from typing import Any

from app.tools.errors import ToolError
from app.tools.registry import ToolContext

Result = dict[str, str]
_local_calls: dict[int, deque[float]] = defaultdict(deque)


async def search(ctx: ToolContext, query: str, count: int) -> tuple[str, list[Result], bool]:
    """(backend, results, cached) for `query`; ToolError when rate limited or failing."""
    s = ctx.settings
    backend = "searxng" if s.search_backend == "searxng" else "duckduckgo"
    key = "taskbench:search:" + hashlib.sha256(f"{backend}|{count}|{query}".encode()).hexdigest()
    hit = await _cache_get(ctx, key)
    if hit is not None:
        return backend, hit, True
    await _rate_limit(ctx)
    import httpx  # loaded by the first search, not by every idle worker

    try:
        results = await (_searxng(ctx, query, count) if backend == "searxng"
                         else asyncio.to_thread(_ddgs, query, count))
    except (httpx.HTTPError, ValueError, RuntimeError) as exc:
        raise ToolError(f"search failed ({backend}): {exc}") from exc
    await _cache_put(ctx, key, results)
    return backend, results, False


def _clean(title: Any, url: Any, snippet: Any) -> Result:
    return {"title": str(title or "")[:300], "url": str(url or ""),
            "snippet": " ".join(str(snippet or "").split())[:500]}


def _ddgs(query: str, count: int) -> list[Result]:
    from ddgs import DDGS  # imported late: it is slow to import and only this backend needs it

    try:
        rows = DDGS().text(query, max_results=count) or []
    except Exception as exc:  # noqa: BLE001 - ddgs raises its own family; all mean "failed"
        raise RuntimeError(str(exc)) from exc
    return [_clean(r.get("title"), r.get("href"), r.get("body")) for r in rows][:count]


async def _searxng(ctx: ToolContext, query: str, count: int) -> list[Result]:
    base = ctx.settings.searxng_url.rstrip("/")
    if not base:
        raise ValueError("TASKBENCH_SEARXNG_URL is not set")
    import httpx

    async with httpx.AsyncClient(timeout=20, trust_env=False) as client:
        resp = await client.get(f"{base}/search", params={"q": query, "format": "json"})
        resp.raise_for_status()
        rows = resp.json().get("results", [])
    return [_clean(r.get("title"), r.get("url"), r.get("content")) for r in rows][:count]


async def _rate_limit(ctx: ToolContext) -> None:
    limit = ctx.settings.search_per_minute
    redis = _redis(ctx)
    if redis is not None:
        key = f"taskbench:search-rate:{ctx.task_id}:{int(time.time() // 60)}"
        async with redis:
            used = await redis.incr(key)
            await redis.expire(key, 120)
    else:
        calls = _local_calls[ctx.task_id]
        now = time.monotonic()
        while calls and now - calls[0] > 60:
            calls.popleft()
        calls.append(now)
        used = len(calls)
    if used > limit:
        raise ToolError(f"search rate limit: {limit} searches per minute; wait and retry")


def _redis(ctx: ToolContext) -> Any:
    url = ctx.settings.pubsub_redis_url
    if not url:
        return None
    import redis.asyncio as aioredis

    return aioredis.from_url(url, decode_responses=True)


def _sqlite_path(ctx: ToolContext) -> str:
    ctx.settings.var_dir.mkdir(parents=True, exist_ok=True)
    return str(ctx.settings.var_dir / "search-cache.sqlite3")


async def _cache_get(ctx: ToolContext, key: str) -> list[Result] | None:
    redis = _redis(ctx)
    if redis is not None:
        async with redis:
            raw = await redis.get(key)
        return json.loads(raw) if raw else None
    return await asyncio.to_thread(_sqlite_get, _sqlite_path(ctx), key)


async def _cache_put(ctx: ToolContext, key: str, results: list[Result]) -> None:
    ttl = ctx.settings.search_cache_s
    redis = _redis(ctx)
    if redis is not None:
        async with redis:
            await redis.set(key, json.dumps(results), ex=ttl)
        return
    await asyncio.to_thread(_sqlite_put, _sqlite_path(ctx), key, results, time.time() + ttl)


def _sqlite_get(path: str, key: str) -> list[Result] | None:
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE IF NOT EXISTS cache (k TEXT PRIMARY KEY, v TEXT, until REAL)")
        row = db.execute("SELECT v, until FROM cache WHERE k = ?", (key,)).fetchone()
    return json.loads(row[0]) if row and row[1] > time.time() else None


def _sqlite_put(path: str, key: str, results: list[Result], until: float) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE IF NOT EXISTS cache (k TEXT PRIMARY KEY, v TEXT, until REAL)")
        db.execute("INSERT OR REPLACE INTO cache VALUES (?, ?, ?)",
                   (key, json.dumps(results), until))

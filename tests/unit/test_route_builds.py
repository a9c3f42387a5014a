"""The API builds each route's validators and serializers twice at most (issue 15: memory).

FastAPI builds a route once where it is declared (`@router.get`) and once more, on the first
request, for the app that includes its router; every level of routers in between, and every model
named in an answer of `responses=`, would add a pydantic TypeAdapter per route (~3 KB each, with
its pydantic-core validator and serializer). Counted in a fresh process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import asyncio, gc, json
import httpx
from pydantic import TypeAdapter

def adapters():
    gc.collect()
    return sum(isinstance(o, TypeAdapter) for o in gc.get_objects())

import app.main
declared = adapters()
application = app.main.create_app(sweeper=False)
created = adapters()

async def first_request():
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return (await client.get("/no/such/page")).status_code

status = asyncio.run(first_request())
print(json.dumps([declared, created, adapters(), status]))
"""


def test_each_route_is_built_where_declared_and_once_for_the_app() -> None:
    # given a fresh process that imported the routes, when it creates the app and serves a
    # request that walks every route (it matches none)
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True,
                         text=True, check=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    declared, created, served, status = json.loads(out.stdout.strip().splitlines()[-1])
    # then creating the app built nothing, and the request built each route once more at most
    assert status == 404
    assert declared > 100
    assert created == declared
    assert served <= 2 * declared


def test_error_answers_refer_to_one_error_body_schema() -> None:
    # given the document the API serves
    from app.api.openapi import REF_TEMPLATE, ErrorBody
    from app.main import create_app

    spec = create_app(sweeper=False).openapi()
    # then ErrorBody's schema is in it once, and a 401 refers to it
    assert spec["components"]["schemas"]["ErrorBody"] == \
        ErrorBody.model_json_schema(ref_template=REF_TEMPLATE)
    answer = spec["paths"]["/api/v1/tasks"]["post"]["responses"]["401"]
    assert answer["content"]["application/json"]["schema"] == \
        {"$ref": "#/components/schemas/ErrorBody"}

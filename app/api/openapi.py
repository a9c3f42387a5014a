"""What the OpenAPI document promises, so that generated clients (openapi-python-client) work.

    operation_id(route)     the route function's name: `create_task`, not
                            `create_task_api_v1_tasks_post`
    ERRORS / PUBLIC_ERRORS  the error answers every authenticated (or public) route can give,
                            one body shape (ErrorBody) for all of them; ENDED a 409
    binary(media_type)      a 200 that is a file (downloads, report.pdf)
    install(app)            ErrorBody's schema, which the error answers refer to; file fields
                            of multipart bodies as `format: binary` (FastAPI only writes
                            `contentMediaType`, which generators read as a plain string)
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    """Every error answer: `detail` says what went wrong; for 422 it names the field(s)."""

    detail: str | list[dict[str, Any]] | dict[str, Any] = Field(
        description="a sentence, or for invalid input a list of {loc, msg, type}")


REF_TEMPLATE = "#/components/schemas/{model}"
ERROR_REF = REF_TEMPLATE.format(model="ErrorBody")


def _error(description: str) -> dict[str, Any]:
    # A reference, not `"model": ErrorBody`: FastAPI builds a serializer for every model of
    # every route's every answer (~3 KB each, 5 answers x 98 routes) that only the document
    # reads; `install` puts ErrorBody's schema in the document once instead.
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": ERROR_REF}}}}


ERRORS: dict[int | str, dict[str, Any]] = {
    401: _error("No API key, or one that is not valid (send `Authorization: Bearer <key>`)"),
    404: _error("No such resource, or it belongs to someone else"),
    413: _error("The request body (or an uploaded file) is larger than allowed"),
    422: _error("Invalid input; `detail` names the field"),
    429: _error("Too many requests for this key; retry after the `Retry-After` header's seconds"),
}
ENDED: dict[int | str, dict[str, Any]] = {409: _error("The task has ended")}
# /health: no key, no parameters; only the body limit applies
PUBLIC_ERRORS: dict[int | str, dict[str, Any]] = {413: ERRORS[413]}


def operation_id(route: APIRoute) -> str:
    return route.name


def binary(media_type: str = "application/octet-stream",
           description: str = "The file's bytes") -> dict[int | str, dict[str, Any]]:
    """The 200 answer of a route that returns a file."""
    return {200: {"description": description,
                  "content": {media_type: {"schema": {"type": "string", "format": "binary"}}}}}


def install(app: FastAPI) -> None:
    """Post-process the generated document once, when it is first asked for."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            bodies = schema.setdefault("components", {}).setdefault("schemas", {})
            bodies["ErrorBody"] = ErrorBody.model_json_schema(ref_template=REF_TEMPLATE)
            for body in bodies.values():
                _mark_files(body)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def _mark_files(schema: dict[str, Any]) -> None:
    """Give every file field (a string with contentMediaType) `format: binary`."""
    for prop in (schema.get("properties") or {}).values():
        for candidate in (prop, prop.get("items") or {}):
            if candidate.get("type") == "string" and "contentMediaType" in candidate:
                candidate["format"] = "binary"

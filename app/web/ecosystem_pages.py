"""Dashboard pages of the character ecosystems: the list, the observatory and the director.

The pages are shells: their scripts (static/observatory.js, static/director.js) read and act
through the REST API with the page's short-lived token, so the page shows exactly what the API
says (a validation problem is named as the API names it). Another user's ecosystem is a 404
here as in the API.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api import characters as characters_api
from app.api.deps import SessionDep
from app.web.session import page_token, page_user, render

router = APIRouter(tags=["dashboard"], include_in_schema=False)


@router.get("/ecosystems")
async def ecosystems_page(request: Request, session: SessionDep) -> Response:
    user, _ = await page_user(request, session)
    listed = await characters_api.list_ecosystems(session, user)
    return render(request, "ecosystems.html", {"user": user, "ecosystems": listed.data})


@router.get("/ecosystems/{ecosystem_id}")
async def observatory_page(ecosystem_id: int, request: Request, session: SessionDep) -> Response:
    user, key_id = await page_user(request, session)
    eco = await characters_api.get_ecosystem(ecosystem_id, session, user)
    return render(request, "observatory.html", {
        "user": user, "eco": eco, "token": await page_token(session, key_id)})


@router.get("/ecosystems/{ecosystem_id}/director")
async def director_page(ecosystem_id: int, request: Request, session: SessionDep,
                        run: int | None = None, scenario: str = "") -> Response:
    """Compose a scenario cast from the ecosystem, validate it live, start and steer runs;
    `?run=ID` opens an earlier run's definition and controls, `?scenario=NAME` a template's."""
    user, key_id = await page_user(request, session)
    eco = await characters_api.get_ecosystem(ecosystem_id, session, user)
    return render(request, "director.html", {
        "user": user, "eco": eco, "token": await page_token(session, key_id),
        "run": run if run and 0 < run < 2**62 else "", "scenario": scenario[:100]})

"""/templates/{type}: agents, playbooks and scenarios — shipped files and stored templates.

Scenario and agent templates can be created, updated, deleted, exported and imported as YAML;
they are validated the same way as the shipped files. A stored template with a shipped name
takes precedence over the file. Playbooks are listed only (they are files).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import yaml
from fastapi import APIRouter, Body, HTTPException, Query, Request, Response, status
from pydantic import ValidationError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import CurrentUser, SessionDep
from app.kinds.scenario import schema as scenario_schema
from app.kinds.scenario import store
from app.models import AgentCreate, TemplatePublic, TemplateRecord, TemplatesPublic, User, utcnow
from app.ops.seed import agent_templates

router = APIRouter(prefix="/templates", tags=["templates"])
TemplateType = Literal["agents", "playbooks", "scenarios"]
Editable = Literal["agents", "scenarios"]
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")


def unprocessable(problems: list[dict[str, Any]]) -> HTTPException:
    detail = [{"loc": ["body", *p["loc"]], "msg": p["msg"], "type": "value_error"}
              for p in problems]
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)


async def read_body(request: Request) -> Any:
    """The request body as data: YAML for YAML/text bodies, else JSON ({"yaml": …} allowed)."""
    raw = (await request.body()).decode("utf-8", errors="replace")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in YAML_TYPES:
        data, problems = store.parse_yaml(raw)
    else:
        try:
            data, problems = json.loads(raw or "null"), []
        except json.JSONDecodeError as exc:
            data, problems = None, [{"loc": [], "msg": f"invalid JSON: {exc.msg}"}]
        if isinstance(data, dict) and isinstance(data.get("yaml"), str) and len(data) == 1:
            data, problems = store.parse_yaml(data["yaml"])
    if problems:
        raise unprocessable(problems)
    return data


def check(type_: str, data: Any) -> list[dict[str, Any]]:
    """Problems with a template body of this type (the same rules as the shipped files)."""
    if type_ == "scenarios":
        return scenario_schema.validate(data)[1]
    try:
        AgentCreate.model_validate(data)
    except ValidationError as exc:
        return [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors(include_url=False)]
    return []


def _shipped(type_: str) -> dict[str, dict[str, Any]]:
    if type_ == "scenarios":
        return {s["name"]: s["data"] for s in store.load_scenarios()}
    if type_ == "agents":
        return {a.name: a.model_dump(mode="json") for a in agent_templates()}
    try:
        from app.run.playbook import list_playbooks
    except ImportError:  # the playbook engine is optional; list the files as they are
        return {p.stem: yaml.safe_load(p.read_text(encoding="utf-8")) or {}
                for p in sorted((store.TEMPLATES_DIR / "playbooks").glob("*.yaml"))}
    return {p["name"]: p for p in list_playbooks()}


async def _stored(
    session: AsyncSession, type_: str, name: str | None = None
) -> list[TemplateRecord]:
    stmt = select(TemplateRecord).where(TemplateRecord.type == type_)
    if name is not None:
        stmt = stmt.where(TemplateRecord.name == name)
    return list((await session.exec(stmt.order_by(TemplateRecord.name))).all())


def _public(row: TemplateRecord) -> TemplatePublic:
    return TemplatePublic(type=row.type, name=row.name, source="stored", body=row.body,
                          owner_id=row.owner_id, created_at=row.created_at,
                          updated_at=row.updated_at)


def json_schema(type_: str) -> dict[str, Any] | None:
    if type_ == "scenarios":
        return scenario_schema.Scenario.model_json_schema()
    if type_ == "agents":
        return AgentCreate.model_json_schema()
    return None


async def find(session: AsyncSession, type_: str, name: str) -> TemplatePublic:
    """One template by name: the stored one, else the shipped file; 404 when neither."""
    rows = await _stored(session, type_, name) if type_ != "playbooks" else []
    if rows:
        return _public(rows[0])
    shipped = _shipped(type_)
    if name not in shipped:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {type_[:-1]} template {name!r}")
    return TemplatePublic(type=type_, name=name, source="shipped", body=shipped[name])


@router.get("/{type_}", response_model=TemplatesPublic)
async def list_templates(type_: TemplateType, session: SessionDep, _user: CurrentUser
                         ) -> TemplatesPublic:
    """Every template of a type (stored ones shadow shipped files), with the type's schema."""
    rows = await _stored(session, type_) if type_ != "playbooks" else []
    stored = {r.name: _public(r) for r in rows}
    shipped = {n: TemplatePublic(type=type_, name=n, source="shipped", body=b)
               for n, b in _shipped(type_).items()}
    merged = sorted({**shipped, **stored}.values(), key=lambda t: t.name)
    return TemplatesPublic(data=merged, count=len(merged), json_schema=json_schema(type_))


@router.get("/{type_}/{name}", response_model=TemplatePublic)
async def get_template(type_: TemplateType, name: str, session: SessionDep, _user: CurrentUser
                       ) -> TemplatePublic:
    return await find(session, type_, name)


def _name_of(type_: str, data: Any) -> str:
    name = data.get("name") if isinstance(data, dict) else None
    if not isinstance(name, str) or not name:
        raise unprocessable([{"loc": ["name"], "msg": f"a {type_[:-1]} template needs a name"}])
    return name


async def _save(session: AsyncSession, type_: str, data: Any, user: User, *, replace: bool,
                name: str | None = None) -> TemplatePublic:
    problems = check(type_, data)
    if problems:
        raise unprocessable(problems)
    name = name or _name_of(type_, data)
    if data.get("name") != name:
        raise unprocessable([{"loc": ["name"], "msg": f"the body names {data.get('name')!r},"
                                                      f" the path {name!r}"}])
    rows = await _stored(session, type_, name)
    if rows and not replace:
        raise HTTPException(status.HTTP_409_CONFLICT, f"{type_[:-1]} template {name!r} exists")
    row = rows[0] if rows else TemplateRecord(type=type_, name=name, owner_id=user.id)
    if rows and row.owner_id not in (None, user.id) and not user.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only its owner or an admin may change it")
    row.body, row.updated_at = data, utcnow()
    session.add(row)
    await session.commit()
    await session.refresh(row)
    return _public(row)


@router.post("/{type_}", status_code=status.HTTP_201_CREATED, response_model=TemplatePublic)
async def create_template(
    type_: Editable, request: Request, session: SessionDep, user: CurrentUser,
    _body: Annotated[Any, Body(description="The template as JSON, or YAML text")] = None,
) -> TemplatePublic:
    """Store a new template (JSON body, or YAML with a YAML content type)."""
    return await _save(session, type_, await read_body(request), user, replace=False)


@router.put("/{type_}/{name}", response_model=TemplatePublic)
async def update_template(
    type_: Editable, name: str, request: Request, session: SessionDep, user: CurrentUser,
    _body: Annotated[Any, Body(description="The template as JSON, or YAML text")] = None,
) -> TemplatePublic:
    """Create or replace the stored template `name` (a shipped file of that name is shadowed)."""
    return await _save(session, type_, await read_body(request), user, replace=True, name=name)


@router.delete("/{type_}/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_template(type_: Editable, name: str, session: SessionDep, user: CurrentUser
                          ) -> Response:
    rows = await _stored(session, type_, name)
    if not rows:
        detail = ("shipped templates are files and cannot be deleted here"
                  if name in _shipped(type_) else f"no stored {type_[:-1]} template {name!r}")
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail)
    if rows[0].owner_id not in (None, user.id) and not user.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only its owner or an admin may delete it")
    await session.delete(rows[0])
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{type_}/{name}/export")
async def export_template(type_: TemplateType, name: str, session: SessionDep,
                          _user: CurrentUser) -> Response:
    """The template as a YAML file."""
    found = await find(session, type_, name)
    text = yaml.safe_dump(found.body, sort_keys=False, allow_unicode=True)
    return Response(text, media_type="application/yaml", headers={
        "content-disposition": f'attachment; filename="{name}.yaml"'})


@router.post("/{type_}/import", response_model=TemplatePublic)
async def import_template(
    type_: Editable, request: Request, session: SessionDep, user: CurrentUser,
    overwrite: Annotated[bool, Query(description="Replace a stored template of that name")] = False,
    _body: Annotated[str | None, Body(media_type="application/yaml")] = None,
) -> TemplatePublic:
    """Store a template from YAML (as exported); 409 when it exists unless `overwrite`."""
    return await _save(session, type_, await read_body(request), user, replace=overwrite)

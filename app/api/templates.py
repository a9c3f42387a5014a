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
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app import kinds
from app.api.deps import CurrentUser, SessionDep
from app.kinds import TemplateSpec
from app.kinds.scenario import store
from app.models import TemplatePublic, TemplateRecord, TemplatesPublic, User, utcnow

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


def _type(type_: str) -> TemplateSpec:
    return kinds.templates()[type_]


def check(type_: str, data: Any) -> list[dict[str, Any]]:
    """Problems with a template body of this type (the same rules as the shipped files)."""
    checker = _type(type_).check
    if checker is None:
        return [{"loc": [], "msg": f"{type_} templates are files and cannot be stored"}]
    return checker(data)


def _shipped(type_: str) -> dict[str, dict[str, Any]]:
    return _type(type_).shipped()


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
    schema = _type(type_).json_schema
    return schema() if schema else None


async def _visible_to(session: AsyncSession, user: User | None,
                      rows: list[TemplateRecord]) -> list[TemplateRecord]:
    """The stored templates `user` may see: their own, and those published by an admin (or
    by nobody); admins see every one. None (the service itself) sees every one."""
    if user is None or user.is_admin:
        return rows
    owners = {r.owner_id for r in rows if r.owner_id not in (None, user.id)}
    admins = set((await session.exec(
        select(User.id).where(col(User.id).in_(owners), col(User.is_admin)))).all()
    ) if owners else set()
    return [r for r in rows if r.owner_id in (None, user.id) or r.owner_id in admins]


async def find(session: AsyncSession, type_: str, name: str, user: User | None = None
               ) -> TemplatePublic:
    """One template by name: the stored one (if `user` may see it), else the shipped file;
    404 when neither."""
    rows = await _stored(session, type_, name) if _type(type_).check else []
    rows = await _visible_to(session, user, rows)
    if rows:
        return _public(rows[0])
    shipped = _shipped(type_)
    if name not in shipped:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {type_[:-1]} template {name!r}")
    return TemplatePublic(type=type_, name=name, source="shipped", body=shipped[name])


@router.get("/{type_}", response_model=TemplatesPublic)
async def list_templates(type_: TemplateType, session: SessionDep, user: CurrentUser
                         ) -> TemplatesPublic:
    """Every template of a type the user may see (their own, and admins' which shadow shipped
    files), with the type's schema."""
    rows = await _stored(session, type_) if _type(type_).check else []
    rows = await _visible_to(session, user, rows)
    stored = {r.name: _public(r) for r in rows}
    shipped = {n: TemplatePublic(type=type_, name=n, source="shipped", body=b)
               for n, b in _shipped(type_).items()}
    merged = sorted({**shipped, **stored}.values(), key=lambda t: t.name)
    return TemplatesPublic(data=merged, count=len(merged), json_schema=json_schema(type_))


@router.get("/{type_}/{name}", response_model=TemplatePublic)
async def get_template(type_: TemplateType, name: str, session: SessionDep, user: CurrentUser
                       ) -> TemplatePublic:
    return await find(session, type_, name, user)


def _name_of(type_: str, data: Any) -> str:
    name = data.get("name") if isinstance(data, dict) else None
    if not isinstance(name, str) or not name:
        raise unprocessable([{"loc": ["name"], "msg": f"a {type_[:-1]} template needs a name"}])
    return name


async def _save(session: AsyncSession, type_: str, data: Any, user: User, *, replace: bool,
                name: str | None = None) -> TemplatePublic:
    name = name or _name_of(type_, data)
    if name in _shipped(type_) and not user.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"{name!r} is a shipped {type_[:-1]} template: only an admin may "
                            "publish a template of that name (pick another name)")
    problems = check(type_, data)
    if problems:
        raise unprocessable(problems)
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
                          user: CurrentUser) -> Response:
    """The template as a YAML file."""
    found = await find(session, type_, name, user)
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

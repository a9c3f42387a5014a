"""Templates are owned: a user cannot shadow a shipped template for everyone, nor read another
user's stored template; an admin's template is published to all."""

from __future__ import annotations

import httpx
import pytest
import yaml

from app.core.config import TEMPLATES_DIR
from tests.factories.api import new_user_key
from tests.factories.scenario import THREE


def shipped(kind: str, name: str) -> dict:
    return yaml.safe_load((TEMPLATES_DIR / kind / f"{name}.yaml").read_text())


def as_user(client: httpx.AsyncClient, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=client._transport, base_url=client.base_url,
                             headers={"Authorization": f"Bearer {key}"})


SHADOWS = [("scenarios", "rerum_novarum"), ("scenarios", "workplace_negotiation"),
           ("agents", "junior"), ("agents", "engineer")]


@pytest.mark.parametrize(("kind", "name"), SHADOWS)
@pytest.mark.parametrize("how", ["post", "put", "import"])
async def test_user_cannot_shadow_a_shipped_template(app_client, kind, name, how) -> None:
    body = shipped(kind, name)
    body["description"] = "hijacked"
    key = await new_user_key(f"mallory-{kind}-{name}-{how}@example.com")
    async with as_user(app_client, key) as mallory:
        if how == "post":
            response = await mallory.post(f"/templates/{kind}", json=body)
        elif how == "put":
            response = await mallory.put(f"/templates/{kind}/{name}", json=body)
        else:
            response = await mallory.post(f"/templates/{kind}/import", params={"overwrite": True},
                                          content=yaml.safe_dump(body),
                                          headers={"Content-Type": "application/yaml"})
    # then refused, and everyone (the admin included) still gets the shipped file
    assert response.status_code == 403, response.text
    seen = (await app_client.get(f"/templates/{kind}/{name}")).json()
    assert seen["source"] == "shipped" and seen["body"].get("description") != "hijacked"


async def test_users_template_is_private(app_client) -> None:
    alice = await new_user_key("alice@example.com")
    bob = await new_user_key("bob@example.com")
    async with as_user(app_client, alice) as a, as_user(app_client, bob) as b:
        created = await a.post("/templates/scenarios", json={**THREE, "name": "alices_plan"})
        assert created.status_code == 201, created.text
        # bob neither sees it listed nor reads nor exports it
        listed = (await b.get("/templates/scenarios")).json()["data"]
        assert "alices_plan" not in {t["name"] for t in listed}
        assert (await b.get("/templates/scenarios/alices_plan")).status_code == 404
        assert (await b.get("/templates/scenarios/alices_plan/export")).status_code == 404
        assert (await b.get("/scenarios/alices_plan")).status_code == 404
        # alice does, and so does an admin
        assert (await a.get("/templates/scenarios/alices_plan")).status_code == 200
    assert (await app_client.get("/templates/scenarios/alices_plan")).status_code == 200


async def test_admin_publishes_to_everyone(app_client) -> None:
    published = await app_client.post("/templates/scenarios", json={**THREE, "name": "house"})
    assert published.status_code == 201
    key = await new_user_key("carol@example.com")
    async with as_user(app_client, key) as carol:
        assert (await carol.get("/templates/scenarios/house")).status_code == 200

"""The AI API's admin routes for resource groups, and zeroserve's client routes, as an operator and a
group's client see them: who may do what, what each sees, checked against SAP's spec."""

from __future__ import annotations

import httpx
import pytest
from conftest import token_for
from spec import assert_conforms

from zeroserve.core.store import Deployment


async def client_for(zeroserve, groups: list[str]) -> httpx.AsyncClient:
    token = await token_for(zeroserve, groups)
    return httpx.AsyncClient(base_url=zeroserve.url, timeout=30, headers={"Authorization": f"Bearer {token}"})


async def test_an_operator_creates_lists_reads_and_deletes_resource_groups(api):
    created = assert_conforms(await api.post("/v2/admin/resourceGroups", json={
        "resourceGroupId": "team-a", "labels": [{"key": "ext.ai.sap.com/owner", "value": "ml"}]}))
    assert created.status_code == 202 and created.json()["resourceGroupId"] == "team-a"

    listed = assert_conforms(await api.get("/v2/admin/resourceGroups")).json()
    assert [g["resourceGroupId"] for g in listed["resources"]] == ["default", "team-a"]
    group = assert_conforms(await api.get("/v2/admin/resourceGroups/team-a")).json()
    assert group["status"] == "PROVISIONED" and group["labels"] == [{"key": "ext.ai.sap.com/owner", "value": "ml"}]

    first = assert_conforms(await api.get("/v2/admin/resourceGroups", params={"$top": 1, "$count": "true"})).json()
    assert first["count"] == 2 and [g["resourceGroupId"] for g in first["resources"]] == ["default"]
    second = assert_conforms(await api.get("/v2/admin/resourceGroups", params={"$skip": 1})).json()
    assert second["count"] == 1 and second["resources"][0]["resourceGroupId"] == "team-a"

    deleted = assert_conforms(await api.delete("/v2/admin/resourceGroups/team-a"))
    assert deleted.status_code == 202
    gone = assert_conforms(await api.get("/v2/admin/resourceGroups/team-a"))
    assert gone.status_code == 404


async def test_default_always_exists_and_cannot_be_deleted_or_created_again(api):
    default = assert_conforms(await api.get("/v2/admin/resourceGroups/default"))
    assert default.status_code == 200
    again = assert_conforms(await api.get("/v2/admin/resourceGroups/default")).json()
    assert again["createdAt"] == default.json()["createdAt"]
    refused = assert_conforms(await api.delete("/v2/admin/resourceGroups/default"))
    assert refused.status_code == 400
    twice = assert_conforms(await api.post("/v2/admin/resourceGroups", json={"resourceGroupId": "default"}))
    assert twice.status_code == 409


async def test_creating_a_group_twice_is_a_conflict(api):
    assert (await api.post("/v2/admin/resourceGroups", json={"resourceGroupId": "team-b"})).status_code == 202
    again = assert_conforms(await api.post("/v2/admin/resourceGroups", json={"resourceGroupId": "team-b"}))
    assert again.status_code == 409 and "already exists" in again.json()["error"]["message"]


@pytest.mark.parametrize("body", [
    {"resourceGroupId": "ab"}, {"resourceGroupId": "Team-A"}, {"resourceGroupId": "team.a"},
    {"resourceGroupId": "x" * 64}, {},
    {"resourceGroupId": "team-c", "labels": [{"key": "owner", "value": "ml"}]},
])
async def test_an_invalid_resource_group_gets_400_naming_the_field(api, body):
    response = assert_conforms(await api.post("/v2/admin/resourceGroups", json=body))
    assert response.status_code == 400
    assert ("labels" if "labels" in body else "resourceGroupId") in response.json()["error"]["message"]


async def test_a_group_with_deployments_cannot_be_deleted(api, zeroserve):
    await api.post("/v2/admin/resourceGroups", json={"resourceGroupId": "team-d"})
    record = Deployment(id="iris", group="team-d", executable_id="sklearn")
    await zeroserve.platform.store.deployments.put("team-d", "iris", record)
    refused = assert_conforms(await api.delete("/v2/admin/resourceGroups/team-d"))
    assert refused.status_code == 400 and "iris" in refused.json()["error"]["message"]
    assert (await api.get("/v2/admin/resourceGroups/team-d")).status_code == 200

    await zeroserve.platform.store.deployments.delete("team-d", "iris")
    assert assert_conforms(await api.delete("/v2/admin/resourceGroups/team-d")).status_code == 202


async def test_deleting_a_group_deletes_what_it_held(api, zeroserve):
    await api.post("/v2/admin/resourceGroups", json={"resourceGroupId": "team-e"})
    model = zeroserve.settings.data_dir / "sources" / "m"
    model.mkdir(parents=True)
    registered = await api.post("/v2/lm/artifacts", headers={"AI-Resource-Group": "team-e"}, json={
        "name": "m", "kind": "model", "url": model.as_uri(), "scenarioId": "model-serving"})
    assert registered.status_code == 201
    await api.delete("/v2/admin/resourceGroups/team-e")
    await api.post("/v2/admin/resourceGroups", json={"resourceGroupId": "team-e"})
    listed = await api.get("/v2/lm/artifacts", headers={"AI-Resource-Group": "team-e"})
    assert listed.json()["count"] == 0, "a group created again under the same name starts empty"


async def test_a_group_token_lists_only_its_groups_and_may_not_manage_them(api, zeroserve):
    for group in ("team-a", "team-b"):
        await api.post("/v2/admin/resourceGroups", json={"resourceGroupId": group})
    async with await client_for(zeroserve, ["team-a", "team-x"]) as team:
        listed = assert_conforms(await team.get("/v2/admin/resourceGroups")).json()
        # team-x was never registered, but the token may use it, and the lm routes work there.
        assert [g["resourceGroupId"] for g in listed["resources"]] == ["team-a", "team-x"]
        assert assert_conforms(await team.get("/v2/admin/resourceGroups/team-a")).status_code == 200
        assert assert_conforms(await team.get("/v2/admin/resourceGroups/team-b")).status_code == 404
        assert assert_conforms(await team.get("/v2/admin/resourceGroups/default")).status_code == 404
        create = assert_conforms(await team.post("/v2/admin/resourceGroups", json={"resourceGroupId": "team-c"}))
        assert create.status_code == 403 and create.json()["error"]["code"] == "Forbidden"
        delete = assert_conforms(await team.delete("/v2/admin/resourceGroups/team-a"))
        assert delete.status_code == 403
    assert (await api.get("/v2/admin/resourceGroups/team-a")).status_code == 200


# -- clients -----------------------------------------------------------------------------------------


async def test_an_operator_creates_a_client_whose_secret_gets_a_token_for_its_groups(api, zeroserve):
    created = await api.post("/v2/admin/clients", json={"groups": ["team-a"], "name": "ci"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["groups"] == ["team-a"] and body["name"] == "ci" and body["clientSecret"]
    async with httpx.AsyncClient(base_url=zeroserve.url, timeout=10) as http:
        token = await http.post("/oauth/token", data={"grant_type": "client_credentials"},
                                auth=(body["clientId"], body["clientSecret"]))
    assert token.status_code == 200
    claims = zeroserve.platform.auth.verify(token.json()["access_token"])
    assert claims.groups == ("team-a",)

    listed = (await api.get("/v2/admin/clients")).json()
    mine = [c for c in listed["resources"] if c["clientId"] == body["clientId"]]
    assert mine == [{"clientId": body["clientId"], "name": "ci", "groups": ["team-a"],
                     "createdAt": mine[0]["createdAt"]}]
    assert body["clientSecret"] not in str(listed) and "scrypt" not in str(listed)

    assert (await api.delete(f"/v2/admin/clients/{body['clientId']}")).status_code == 204
    assert body["clientId"] not in str((await api.get("/v2/admin/clients")).json())
    assert (await api.delete(f"/v2/admin/clients/{body['clientId']}")).status_code == 404


@pytest.mark.parametrize("body, field", [({"groups": []}, "groups"), ({"groups": ["Team A"]}, "groups"),
                                         ({"group": ["team-a"]}, "group")])
async def test_a_client_with_bad_groups_gets_400(api, body, field):
    response = await api.post("/v2/admin/clients", json=body)
    assert response.status_code == 400 and field in response.json()["error"]["message"]


async def test_only_an_operator_may_manage_clients(zeroserve):
    async with await client_for(zeroserve, ["team-a"]) as team:
        assert (await team.post("/v2/admin/clients", json={"groups": ["*"]})).status_code == 403
        assert (await team.get("/v2/admin/clients")).status_code == 403
        assert (await team.delete("/v2/admin/clients/zs-0000000000000000")).status_code == 403

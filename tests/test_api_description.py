"""The API's description (``/openapi.json``) as a tool reading it sees it: every successful answer has a
schema, the operations have SAP's ids (readable ones where SAP has none), ``/docs`` can fetch a token
with OAuth2 client credentials, and the Python client reads answers with the very models described."""

from __future__ import annotations

import httpx
from reference import reference_dir

import zeroserve.client as client
from zeroserve.api import records

METHODS = {"get", "put", "post", "patch", "delete"}


async def description(zeroserve) -> dict:
    async with httpx.AsyncClient(base_url=zeroserve.url) as http:
        response = await http.get("/openapi.json")
    response.raise_for_status()
    return response.json()


async def test_every_successful_answer_has_a_schema(zeroserve):
    paths = (await description(zeroserve))["paths"]
    untyped = [
        f"{method.upper()} {path} {status} {media}"
        for path, operations in paths.items() for method, operation in operations.items() if method in METHODS
        for status, answer in operation["responses"].items() if status.startswith("2")
        for media, content in answer.get("content", {}).items()
        if not content.get("schema") or (content["schema"] == {} and not path.startswith("/v2/inference"))
    ]
    assert untyped == []


async def test_operations_carry_sap_ids_where_sap_has_them_and_readable_ones_elsewhere(zeroserve):
    import yaml

    sap = yaml.safe_load((reference_dir() / "aicore-openapi-2.42.0.yaml").read_text())["paths"]
    paths = (await description(zeroserve))["paths"]
    ids = {(method, path): operation["operationId"] for path, operations in paths.items()
           for method, operation in operations.items() if method in METHODS}
    assert len(set(ids.values())) == len(ids), "operation ids are unique"
    for (method, path), operation_id in ids.items():
        sap_id = sap.get(path.removeprefix("/v2"), {}).get(method, {}).get("operationId")
        if sap_id:
            assert operation_id == sap_id, f"{method.upper()} {path}"
        else:
            assert "_v2_" not in operation_id and len(operation_id) <= 40, f"{method.upper()} {path}: {operation_id}"
    assert ids[("get", "/v2/lm/deployments/{deploymentId}")] == "deployment.get"
    assert ids[("get", "/v2/subscriptions")] == "subscriptions.query"


async def test_docs_authorize_with_client_credentials_at_the_token_endpoint(zeroserve):
    described = await description(zeroserve)
    schemes = described["components"]["securitySchemes"]
    assert schemes == {"OAuth2ClientCredentials": {
        "type": "oauth2", "description": schemes["OAuth2ClientCredentials"]["description"],
        "flows": {"clientCredentials": {"tokenUrl": "/oauth/token", "scopes": {}}}}}
    protected = described["paths"]["/v2/lm/deployments"]["get"]
    assert protected["security"] == [{"OAuth2ClientCredentials": []}]


async def test_the_client_reads_answers_with_the_models_the_description_names(zeroserve):
    schemas = (await description(zeroserve))["components"]["schemas"]
    for model in (client.Deployment, client.Artifact, client.Configuration, client.Scenario, client.Executable,
                  client.ResourceGroup, client.ObjectStoreSecret, client.Subscription, client.ApiClient,
                  client.ClientCredentials, client.Created, client.ArtifactMetrics):
        assert model is getattr(records, model.__name__)
        described = schemas[model.__name__]["properties"]
        assert set(described) == set(model.model_json_schema(mode="serialization")["properties"]), model.__name__
    assert "deploymentUrl" in schemas["Deployment"]["properties"]  # SAP's names on the wire

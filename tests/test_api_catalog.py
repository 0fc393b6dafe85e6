"""The AI API's catalog (/v2/lm): scenarios and executables from the serving templates, artifacts,
configurations, model metrics and meta, as an AI Core client sees them, checked against SAP's spec."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from conftest import token_for
from models import train_iris_sklearn
from spec import assert_conforms

from zeroserve.events import ArtifactCreated, Label, Metric, new_event

DEFAULT = {"AI-Resource-Group": "default"}


async def register(api: httpx.AsyncClient, url: str, name: str = "iris", group: str = "default",
                   **fields: Any) -> str:
    body = {"name": name, "kind": "model", "url": url, "scenarioId": "model-serving", **fields}
    response = assert_conforms(await api.post("/v2/lm/artifacts", json=body, headers={"AI-Resource-Group": group}))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.fixture
def model_url(zeroserve) -> str:
    return train_iris_sklearn(zeroserve.settings.data_dir / "sources" / "iris").as_uri()


async def eventually(check, timeout: float = 30) -> Any:
    """The first truthy result of ``check()``, polled until the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {check}")
        await asyncio.sleep(0.05)


async def plain_count(api: httpx.AsyncClient, path: str, params: dict[str, Any]) -> int:
    """A $count answer: SAP's text/plain integer."""
    response = assert_conforms(await api.get(path, params=params, headers=DEFAULT))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    assert response.text.isdigit(), response.text
    return int(response.text)


# -- scenarios and executables -------------------------------------------------------------------


async def test_scenarios_and_executables_are_the_serving_templates(api):
    scenarios = assert_conforms(await api.get("/v2/lm/scenarios", headers=DEFAULT)).json()
    assert [s["id"] for s in scenarios["resources"]] == ["model-serving"] and scenarios["count"] == 1
    scenario = assert_conforms(await api.get("/v2/lm/scenarios/model-serving", headers=DEFAULT)).json()
    assert scenario["name"] == "Model serving"

    versions = assert_conforms(await api.get("/v2/lm/scenarios/model-serving/versions", headers=DEFAULT)).json()
    assert [v["id"] for v in versions["resources"]] == ["1.0.0"]

    executables = assert_conforms(await api.get("/v2/lm/scenarios/model-serving/executables", headers=DEFAULT)).json()
    assert {e["id"] for e in executables["resources"]} == {
        "sklearn", "onnx", "xgboost", "lightgbm", "pytorch", "huggingface", "huggingface-embeddings", "custom"}
    sklearn = assert_conforms(
        await api.get("/v2/lm/scenarios/model-serving/executables/sklearn", headers=DEFAULT)).json()
    assert sklearn["deployable"] is True and sklearn["versionId"] == "1.0.0"
    assert [a["name"] for a in sklearn["inputArtifacts"]] == ["model"]
    assert {"name": "minReplicas", "type": "string", "default": "0"}.items() <= sklearn["parameters"][1].items()

    older = await api.get("/v2/lm/scenarios/model-serving/executables", params={"versionId": "0.9.0"},
                          headers=DEFAULT)
    assert assert_conforms(older).json() == {"count": 0, "resources": []}


async def test_an_unknown_scenario_or_executable_is_not_found(api):
    missing = assert_conforms(await api.get("/v2/lm/scenarios/no-such-scenario", headers=DEFAULT))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NotFound"
    elsewhere = await api.get("/v2/lm/scenarios/no-such-scenario/executables/sklearn", headers=DEFAULT)
    assert assert_conforms(elsewhere).status_code == 404
    unknown = await api.get("/v2/lm/scenarios/model-serving/executables/tensorrt", headers=DEFAULT)
    assert assert_conforms(unknown).status_code == 404


# -- artifacts -------------------------------------------------------------------------------------


async def test_a_registered_artifact_is_readable_at_once_then_staged_keeping_its_creation_time(
        api, zeroserve, listen, model_url):
    statuses = await listen(zeroserve, "zeroserve.default.artifact.status")
    labels = [{"key": "ext.ai.sap.com/dataset", "value": "iris"}]
    response = assert_conforms(await api.post("/v2/lm/artifacts", headers=DEFAULT, json={
        "name": "iris", "kind": "model", "url": model_url, "scenarioId": "model-serving",
        "description": "decision tree", "labels": labels}))
    assert response.status_code == 201
    artifact_id = response.json()["id"]
    assert response.json()["url"] == model_url
    assert response.headers["Location"].endswith(f"/v2/lm/artifacts/{artifact_id}")

    first = assert_conforms(await api.get(f"/v2/lm/artifacts/{artifact_id}", headers=DEFAULT)).json()
    assert first["name"] == "iris" and first["labels"] == labels and first["description"] == "decision tree"

    await statuses.wait_for(lambda e: e["id"] == artifact_id and e["status"] == "staged")
    record = await eventually(lambda: _staged(zeroserve, artifact_id))
    assert record.local_path and record.labels[0].value == "iris"
    later = assert_conforms(await api.get(f"/v2/lm/artifacts/{artifact_id}", headers=DEFAULT)).json()
    assert later["createdAt"] == first["createdAt"] and later["labels"] == labels


async def _staged(zeroserve, artifact_id: str):
    record = await zeroserve.platform.store.artifacts.get("default", artifact_id)
    return record if record is not None and record.status == "staged" else None


@pytest.mark.parametrize("url, reason", [
    ("file:///etc/passwd", "InvalidArtifactUri"),
    ("ftp://example.org/model", "InvalidArtifactUri"),
    ("ai://no-such-store/iris", "InvalidArtifactUri"),
])
async def test_an_artifact_url_zeroserve_must_not_read_gets_400_with_the_reason(api, url, reason):
    response = assert_conforms(await api.post("/v2/lm/artifacts", headers=DEFAULT, json={
        "name": "x", "kind": "model", "url": url, "scenarioId": "model-serving"}))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == reason and "body.url" in response.json()["error"]["message"]
    assert assert_conforms(await api.get("/v2/lm/artifacts", headers=DEFAULT)).json()["count"] == 0


@pytest.mark.parametrize("change, field", [
    ({"scenarioId": None}, "scenarioId"),
    ({"kind": "weights"}, "kind"),
    ({"url": "not a url"}, "url"),
    ({"labels": [{"key": "team", "value": "a"}]}, "labels"),
    ({"scenarioId": "no-such-scenario"}, "scenarioId"),
    ({"nmae": "typo"}, "nmae"),
])
async def test_bad_artifact_input_gets_400_naming_the_field(api, model_url, change, field):
    body = {"name": "iris", "kind": "model", "url": model_url, "scenarioId": "model-serving", **change}
    body = {key: value for key, value in body.items() if value is not None}
    response = assert_conforms(await api.post("/v2/lm/artifacts", headers=DEFAULT, json=body))
    assert response.status_code == 400 and field in response.json()["error"]["message"]


async def test_artifacts_are_filtered_searched_paged_and_counted(api, model_url):
    team = "ext.ai.sap.com/team"
    await register(api, model_url, "iris-tree", description="Decision TREE", labels=[{"key": team, "value": "a"}])
    await register(api, model_url, "iris-forest", labels=[{"key": team, "value": "b"}])
    await register(api, model_url, "flowers", kind="dataset")

    async def names(**params: Any) -> list[str]:
        response = assert_conforms(await api.get("/v2/lm/artifacts", params=params, headers=DEFAULT))
        assert response.status_code == 200, response.text
        return [a["name"] for a in response.json()["resources"]]

    async def count(**params: Any) -> int:
        return await plain_count(api, "/v2/lm/artifacts/$count", params)

    assert await names() == ["iris-tree", "iris-forest", "flowers"]
    assert await names(kind="dataset") == ["flowers"] and await count(kind="dataset") == 1
    assert await names(name="iris-forest") == ["iris-forest"]
    assert await names(artifactLabelSelector=f"{team}=a") == ["iris-tree"]
    assert await names(artifactLabelSelector=f"{team}!=a") == ["iris-forest", "flowers"]
    assert await count(artifactLabelSelector=f"{team}=a,{team}=b") == 0
    assert await names(**{"$search": "tree"}) == ["iris-tree"]
    assert await names(**{"$search": "TREE"}) == ["iris-tree"]  # in the description
    assert await names(**{"$search": "Tree"}) == []
    assert await names(**{"$search": "Tree", "searchCaseInsensitive": "true"}) == ["iris-tree"]
    assert await count(**{"$search": "iris"}) == 2
    assert await names(**{"$top": 2}) == ["iris-tree", "iris-forest"]
    assert await names(**{"$top": 2, "$skip": 2}) == ["flowers"]
    assert await names(executionId="some-execution") == [] and await count(scenarioId="model-serving") == 3

    paged = (await api.get("/v2/lm/artifacts", params={"$top": 1}, headers=DEFAULT)).json()
    assert paged["count"] == 3 and len(paged["resources"]) == 1, "count is every match, not the page"
    expanded = assert_conforms(await api.get("/v2/lm/artifacts", params={"$expand": "scenario", "$top": 1},
                                             headers=DEFAULT)).json()
    assert expanded["resources"][0]["scenario"]["id"] == "model-serving"


@pytest.mark.parametrize("params, field", [
    ({"artifactLabelSelector": "team=a"}, "artifactLabelSelector"),
    ({"$top": "-1"}, "$top"),
    ({"kind": "weights"}, "kind"),
    ({"$expand": "everything"}, "$expand"),
])
async def test_a_bad_artifact_query_gets_400_naming_the_parameter(api, params, field):
    response = await api.get("/v2/lm/artifacts", params=params, headers=DEFAULT)
    assert response.status_code == 400 and field in response.json()["error"]["message"]


async def test_an_unknown_artifact_is_not_found(api):
    response = assert_conforms(await api.get("/v2/lm/artifacts/00000000-0000-4000-8000-000000000000",
                                             headers=DEFAULT))
    assert response.status_code == 404 and response.json()["error"]["code"] == "NotFound"


# -- configurations ----------------------------------------------------------------------------


def configuration(artifact_id: str | None, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "iris-small", "executableId": "sklearn", "scenarioId": "model-serving",
        "parameterBindings": [{"key": "resourcePlan", "value": "starter"}, {"key": "maxReplicas", "value": "1"}],
        "inputArtifactBindings": [{"key": "model", "artifactId": artifact_id}] if artifact_id else [],
    }
    return {**body, **changes}


async def test_a_configuration_is_stored_at_once_and_announced(api, zeroserve, listen, model_url):
    events = await listen(zeroserve, "zeroserve.default.configuration.created")
    artifact_id = await register(api, model_url)
    response = assert_conforms(await api.post("/v2/lm/configurations", json=configuration(artifact_id),
                                              headers=DEFAULT))
    assert response.status_code == 201, response.text
    configuration_id = response.json()["id"]
    assert response.headers["Location"].endswith(f"/v2/lm/configurations/{configuration_id}")

    stored = assert_conforms(await api.get(f"/v2/lm/configurations/{configuration_id}", headers=DEFAULT)).json()
    assert stored["inputArtifactBindings"] == [{"key": "model", "artifactId": artifact_id}]
    assert {"key": "maxReplicas", "value": "1"} in stored["parameterBindings"]
    announced = await events.wait_for(lambda e: e["id"] == configuration_id)
    assert announced["executableId"] == "sklearn" and announced["inputArtifactBindings"][0]["artifactId"] == artifact_id


@pytest.mark.parametrize("change, named", [
    ({"parameterBindings": [{"key": "gpus", "value": "1"}]}, "'gpus'"),
    ({"inputArtifactBindings": [{"key": "weights", "artifactId": "ARTIFACT"}]}, "'weights'"),
    ({"inputArtifactBindings": []}, "'model'"),
    ({"inputArtifactBindings": [{"key": "model", "artifactId": "never-registered"}]}, "never-registered"),
    ({"executableId": "tensorrt"}, "executableId"),
    ({"scenarioId": "no-such-scenario"}, "scenarioId"),
    ({"name": None}, "name"),
    ({"parameterBindings": [{"key": "minReplicas"}]}, "parameterBindings"),
    ({"parameterBindings": [{"key": "idleWindow", "value": "sometimes"}]}, "must be 'fixed' or 'learned'"),
    ({"parameterBindings": [{"key": "requestTimeout", "value": "forever"}]}, "'requestTimeout'"),
    ({"parameterBindings": [{"key": "deploymentMode", "value": "Raw"}]}, "'Raw' is not a KServe deployment mode"),
    ({"parameterBindings": [{"key": "deploymentMode", "value": "Standard"}]}, "ZEROSERVE_KSERVE_PROMETHEUS_URL"),
])
async def test_a_configuration_that_could_never_deploy_gets_400_naming_what_is_wrong(api, model_url, change, named):
    artifact_id = await register(api, model_url)
    body = configuration(artifact_id)
    for key, value in change.items():
        if value is None:
            del body[key]
        else:
            body[key] = value
    for binding in body["inputArtifactBindings"]:
        if binding["artifactId"] == "ARTIFACT":  # the artifact, bound to an input the executable lacks
            binding["artifactId"] = artifact_id
    response = assert_conforms(await api.post("/v2/lm/configurations", json=body, headers=DEFAULT))
    assert response.status_code == 400, response.text
    assert named in response.json()["error"]["message"]
    assert (await api.get("/v2/lm/configurations/$count", headers=DEFAULT)).text == "0"


async def test_a_configuration_may_choose_kserve_standard_mode_and_the_dry_run_shows_what_kserve_gets(api, model_url):
    artifact_id = await register(api, model_url)
    standard = [{"key": "deploymentMode", "value": "Standard"}, {"key": "minReplicas", "value": "1"}]
    created = await api.post("/v2/lm/configurations", headers=DEFAULT,
                             json=configuration(artifact_id, parameterBindings=standard))
    assert created.status_code == 201, created.text

    rendered = await api.post("/v2/renderings", headers=DEFAULT, json={
        "executableId": "sklearn", "deploymentId": "iris", "parameterBindings": standard,
        "inputArtifactBindings": [{"key": "model", "artifactId": artifact_id}]})
    assert rendered.status_code == 200, rendered.text
    isvc = rendered.json()["inferenceService"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    # No Prometheus named in the settings: an HPA, which keeps at least the one replica asked for.
    assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "hpa"
    assert (isvc["spec"]["predictor"]["minReplicas"], isvc["spec"]["predictor"]["scaleMetric"]) == (1, "cpu")

    at_zero = await api.post("/v2/renderings", headers=DEFAULT, json={
        "executableId": "sklearn", "parameterBindings": [{"key": "deploymentMode", "value": "Standard"}],
        "inputArtifactBindings": [{"key": "model", "artifactId": artifact_id}]})
    assert at_zero.status_code == 400
    assert at_zero.json()["error"]["code"] == "InvalidConfiguration"
    assert "scales to zero only through KEDA" in at_zero.json()["error"]["message"]


async def test_configurations_are_filtered_searched_paged_and_counted(api, model_url):
    artifact_id = await register(api, model_url)
    for name, executable in (("iris-small", "sklearn"), ("iris-LARGE", "sklearn"), ("onnx-iris", "onnx")):
        response = await api.post("/v2/lm/configurations", headers=DEFAULT,
                                  json=configuration(artifact_id, name=name, executableId=executable))
        assert response.status_code == 201, response.text

    async def names(**params: Any) -> list[str]:
        response = assert_conforms(await api.get("/v2/lm/configurations", params=params, headers=DEFAULT))
        return [c["name"] for c in response.json()["resources"]]

    async def count(**params: Any) -> int:
        return await plain_count(api, "/v2/lm/configurations/$count", params)

    assert await names() == ["iris-small", "iris-LARGE", "onnx-iris"]
    assert await names(executableIds="onnx") == ["onnx-iris"]
    assert await count(executableIds="onnx,sklearn") == 3
    assert await names(**{"$search": "large"}) == []
    assert await names(**{"$search": "large", "searchCaseInsensitive": "true"}) == ["iris-LARGE"]
    assert await names(**{"$top": 1, "$skip": 1}) == ["iris-LARGE"]
    assert await count(scenarioId="model-serving") == 3 and await count(scenarioId="other-scenario") == 0
    expanded = assert_conforms(await api.get("/v2/lm/configurations", params={"$expand": "scenario"},
                                             headers=DEFAULT)).json()
    assert all(c["scenario"]["id"] == "model-serving" for c in expanded["resources"])
    missing = await api.get("/v2/lm/configurations/00000000-0000-4000-8000-000000000000", headers=DEFAULT)
    assert assert_conforms(missing).status_code == 404


# -- resource groups keep artifacts and configurations apart -----------------------------------------


async def test_a_group_token_sees_nothing_of_another_groups_artifacts_and_configurations(api, zeroserve, model_url):
    artifact_id = await register(api, model_url)
    created = await api.post("/v2/lm/configurations", json=configuration(artifact_id), headers=DEFAULT)
    configuration_id = created.json()["id"]
    token = await token_for(zeroserve, ["team-a"])
    async with httpx.AsyncClient(base_url=zeroserve.url, timeout=30,
                                 headers={"Authorization": f"Bearer {token}"}) as team_a:
        own = {"AI-Resource-Group": "team-a"}
        assert (await team_a.get(f"/v2/lm/artifacts/{artifact_id}", headers=DEFAULT)).status_code == 404
        assert (await team_a.get(f"/v2/lm/artifacts/{artifact_id}", headers=own)).status_code == 404
        assert (await team_a.get(f"/v2/lm/configurations/{configuration_id}", headers=own)).status_code == 404
        assert (await team_a.get("/v2/lm/artifacts", headers=DEFAULT)).status_code == 404
        listed = assert_conforms(await team_a.get("/v2/lm/artifacts", headers=own)).json()
        assert listed == {"count": 0, "resources": []}
        assert (await team_a.get("/v2/lm/configurations/$count", headers=own)).text == "0"
        # Nor can it bind another group's artifact into a configuration of its own.
        bound = await team_a.post("/v2/lm/configurations", json=configuration(artifact_id), headers=own)
        assert bound.status_code == 400 and artifact_id in bound.json()["error"]["message"]
        # In its own group it works like anywhere else.
        mine = await register(team_a, model_url, group="team-a")
        assert (await team_a.get(f"/v2/lm/artifacts/{mine}", headers=own)).status_code == 200
    assert (await api.get(f"/v2/lm/artifacts/{mine}", headers=DEFAULT)).status_code == 404


# -- metrics ---------------------------------------------------------------------------------------


async def test_model_metrics_of_two_artifacts_can_be_compared(api, zeroserve, model_url):
    assert zeroserve.platform is not None
    for artifact_id, accuracy in (("iris-v1", 0.91), ("iris-v2", 0.97)):
        metric = Metric(name="accuracy", value=accuracy, labels=[Label(key="testset", value="iris-holdout")])
        data = ArtifactCreated(id=artifact_id, name=artifact_id, url=model_url,
                               labels=[Label(key="stage", value="dev")], metrics=[metric])
        await zeroserve.platform.bus.publish(new_event(data, source="/tests"), "default")
    for artifact_id in ("iris-v1", "iris-v2"):
        await eventually(lambda id=artifact_id: zeroserve.platform.store.artifacts.get("default", id))

    response = assert_conforms(await api.get("/v2/lm/metrics", params={"executionIds": "iris-v1,iris-v2,unknown"},
                                             headers=DEFAULT))
    found = {r["executionId"]: r for r in response.json()["resources"]}
    assert set(found) == {"iris-v1", "iris-v2"}, "an id without metrics is absent, as in SAP's metrics.find"
    accuracy = found["iris-v2"]["metrics"][0]
    assert (accuracy["name"], accuracy["value"]) == ("accuracy", 0.97)
    assert {"name": "testset", "value": "iris-holdout"} in accuracy["labels"]
    assert {"name": "metrics.ai.sap.com/Artifact.name", "value": "iris-v2"} in accuracy["labels"]
    assert found["iris-v1"]["tags"] == [{"name": "stage", "value": "dev"}]

    filtered = assert_conforms(await api.get("/v2/lm/metrics", params={"$filter": "executionId eq 'iris-v1'"},
                                             headers=DEFAULT)).json()
    assert [r["executionId"] for r in filtered["resources"]] == ["iris-v1"]
    within = await api.get("/v2/lm/metrics", params={"$filter": "executionId in ('iris-v1', 'iris-v2')",
                                                     "$select": "metrics"}, headers=DEFAULT)
    assert [sorted(r) for r in assert_conforms(within).json()["resources"]] == [
        ["createdAt", "executionId", "metrics", "modifiedAt"]] * 2
    tagged = await api.get("/v2/lm/metrics", params={"executionIds": "iris-v1", "tagFilters": "stage!=dev"},
                           headers=DEFAULT)
    assert assert_conforms(tagged).json()["resources"] == []
    every = assert_conforms(await api.get("/v2/lm/metrics", headers=DEFAULT)).json()
    assert sorted(r["executionId"] for r in every["resources"]) == ["iris-v1", "iris-v2"], "no ids: every artifact's"


@pytest.mark.parametrize("params, field", [
    ({"$filter": "name eq 'x'"}, "$filter"),
    ({"executionIds": ",".join(f"artifact-{n}" for n in range(11))}, "executionIds"),
])
async def test_a_metrics_query_without_usable_ids_gets_400(api, params, field):
    response = assert_conforms(await api.get("/v2/lm/metrics", params=params, headers=DEFAULT))
    assert response.status_code == 400 and field in response.json()["error"]["message"]


# -- meta --------------------------------------------------------------------------------------------


async def test_meta_says_what_zeroserve_supports(api):
    meta = assert_conforms(await api.get("/v2/lm/meta")).json()
    capabilities = meta["aiApi"]["capabilities"]
    assert meta["runtimeIdentifier"] == "zeroserve"
    assert capabilities["userDeployments"] is True and capabilities["userExecutions"] is False
    assert capabilities["logs"] == {"executions": False, "deployments": True}
    assert "resourceGroups" in meta["extensions"]


async def test_registering_an_artifact_again_keeps_its_metrics_labels_and_creation_time(api, zeroserve, listen,
                                                                                        model_url):
    statuses = await listen(zeroserve, "zeroserve.default.artifact.status")
    metric = Metric(name="accuracy", value=0.9)
    first = ArtifactCreated(id="iris-again", name="iris", url=model_url, metrics=[metric],
                            labels=[Label(key="ext.ai.sap.com/team", value="a")])
    await zeroserve.platform.bus.publish(new_event(first, source="/tests"), "default")
    await statuses.wait_for(lambda e: e["id"] == "iris-again" and e["status"] == "staged")
    before = assert_conforms(await api.get("/v2/lm/artifacts/iris-again", headers=DEFAULT)).json()

    seen = len(statuses.messages)
    again = ArtifactCreated(id="iris-again", name="iris", url=model_url, description="retrained")
    await zeroserve.platform.bus.publish(new_event(again, source="/tests"), "default")
    await statuses.wait_for(lambda e: e["id"] == "iris-again" and e["status"] == "staged", since=seen)
    after = assert_conforms(await api.get("/v2/lm/artifacts/iris-again", headers=DEFAULT)).json()
    assert after["description"] == "retrained" and after["createdAt"] == before["createdAt"]
    assert after["labels"] == before["labels"]
    record = await zeroserve.platform.store.artifacts.get("default", "iris-again")
    assert record.metrics == [metric]

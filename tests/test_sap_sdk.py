"""SAP's own Python SDK for AI Core (``sap-ai-sdk-core``) drives zeroserve as it drives AI Core.

The point of following the AI API is that existing clients work unchanged: this test logs in with
the SDK's OAuth flow, lists the serving templates, registers a model, configures and deploys it,
reads it back, stops and deletes it, all through ``AICoreV2Client`` and nothing of zeroserve's.
The SDK is synchronous (requests), so it runs in a thread beside the embedded platform.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from ai_api_client_sdk.models.artifact import Artifact
from ai_api_client_sdk.models.input_artifact_binding import InputArtifactBinding
from ai_api_client_sdk.models.parameter_binding import ParameterBinding
from ai_api_client_sdk.models.status import Status
from ai_api_client_sdk.models.target_status import TargetStatus
from ai_core_sdk.ai_core_v2_client import AICoreV2Client
from models import train_iris_sklearn


def wait_for(check, what: str, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.2)


async def test_sap_ai_core_sdk_deploys_stops_and_deletes_a_model(zeroserve):
    assert zeroserve.platform is not None
    identity, secret = await zeroserve.platform.auth.create_client(["default"])
    model_dir = train_iris_sklearn(zeroserve.settings.data_dir / "sources" / "iris")

    def session() -> None:
        ai = AICoreV2Client(base_url=f"{zeroserve.url}/v2", auth_url=f"{zeroserve.url}/oauth/token",
                            client_id=identity.id, client_secret=secret, resource_group="default")
        scenarios = ai.scenario.query()
        assert "model-serving" in [s.id for s in scenarios.resources]
        executables = ai.executable.query(scenario_id="model-serving")
        sklearn = next(e for e in executables.resources if e.id == "sklearn")
        assert sklearn.deployable and "model" in [a.name for a in sklearn.input_artifacts]

        artifact = ai.artifact.create(name="iris", kind=Artifact.Kind.MODEL, url=model_dir.as_uri(),
                                      scenario_id="model-serving", description="iris, from the SAP SDK")
        assert ai.artifact.get(artifact.id).name == "iris"
        configuration = ai.configuration.create(
            name="iris-starter", scenario_id="model-serving", executable_id="sklearn",
            parameter_bindings=[ParameterBinding(key="resourcePlan", value="starter")],
            input_artifact_bindings=[InputArtifactBinding(key="model", artifact_id=artifact.id)],
        )
        deployment = ai.deployment.create(configuration_id=configuration.id)

        running = wait_for(lambda: (d := ai.deployment.get(deployment.id)).status == Status.RUNNING and d,
                           "the deployment RUNNING")
        assert running.deployment_url == f"{zeroserve.url}/v2/inference/deployments/{deployment.id}"
        assert [d.id for d in ai.deployment.query(status=Status.RUNNING).resources] == [deployment.id]

        ai.deployment.modify(deployment.id, target_status=TargetStatus.STOPPED)
        wait_for(lambda: ai.deployment.get(deployment.id).status == Status.STOPPED, "the deployment STOPPED")
        ai.deployment.delete(deployment.id)
        wait_for(lambda: ai.deployment.query().count == 0, "the deployment gone")

    await asyncio.to_thread(session)


async def test_the_sdk_reports_a_wrong_secret_as_an_authentication_error(zeroserve):
    from ai_api_client_sdk.exception import AIAPIAuthenticatorException

    assert zeroserve.platform is not None
    identity, _ = await zeroserve.platform.auth.create_client(["default"])

    def session() -> None:
        ai = AICoreV2Client(base_url=f"{zeroserve.url}/v2", auth_url=f"{zeroserve.url}/oauth/token",
                            client_id=identity.id, client_secret="not-the-secret", resource_group="default")
        with pytest.raises(AIAPIAuthenticatorException) as raised:
            ai.scenario.query()
        assert raised.value.status_code == 401

    await asyncio.to_thread(session)


async def test_a_deployment_made_by_an_event_reads_back_through_the_sdk_with_its_configuration(zeroserve, listen):
    """An event names no configuration, yet SAP's clients require configurationId on every deployment:
    zeroserve records the configuration the request amounts to."""
    from zeroserve.events import DeploymentRequested, new_event

    assert zeroserve.platform is not None
    identity, secret = await zeroserve.platform.auth.create_client(["default"])
    statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
    request = DeploymentRequested(id="from-event", executable_id="sklearn", input_artifacts={"model": "nowhere"},
                                  parameters={"resourcePlan": "starter"})
    await zeroserve.platform.bus.publish(new_event(request, source="/tests"), "default")
    dead = await statuses.wait_for(lambda e: e["id"] == "from-event" and e["status"] == "DEAD")
    assert dead["reason"] == "ArtifactNotFound"

    def session() -> None:
        ai = AICoreV2Client(base_url=f"{zeroserve.url}/v2", auth_url=f"{zeroserve.url}/oauth/token",
                            client_id=identity.id, client_secret=secret, resource_group="default")
        (deployment,) = ai.deployment.query().resources
        assert deployment.id == "from-event" and deployment.status == Status.DEAD
        configuration = ai.configuration.get(deployment.configuration_id)
        assert (configuration.name, configuration.executable_id, configuration.scenario_id) == (
            "from-event", "sklearn", "model-serving")
        assert [(b.key, b.value) for b in configuration.parameter_bindings] == [("resourcePlan", "starter")]
        assert [(b.key, b.artifact_id) for b in configuration.input_artifact_bindings] == [("model", "nowhere")]

    await asyncio.to_thread(session)

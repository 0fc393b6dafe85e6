"""Serving templates and resource plans render into InferenceServices that KServe accepts."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from reference import reference_dir

import zeroserve.templates.validation
from zeroserve.errors import InvalidConfiguration
from zeroserve.settings import Settings
from zeroserve.templates.plans import ResourcePlan, load_resource_plans
from zeroserve.templates.render import render
from zeroserve.templates.serving import ServingTemplate, load_templates
from zeroserve.templates.validation import validate_inference_service

CRDS = reference_dir() / "crds"
CRD = CRDS / "kserve-v0.20.0_serving.kserve.io_inferenceservices.yaml"
GPU_PLANS = ["infer.s", "infer.m", "infer.l", "train.l"]
CPU_PLANS = ["starter", "basic", "basic.8x"]
MODEL = "s3://models/iris/model.joblib"


@pytest.fixture(scope="module")
def crd_schema() -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load(CRD.read_text(encoding="utf-8"), Loader=loader)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    return version["schema"]["openAPIV3Schema"]


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture
def plans(settings: Settings) -> dict[str, ResourcePlan]:
    return load_resource_plans(settings)


@pytest.fixture
def templates(settings: Settings) -> dict[str, ServingTemplate]:
    return load_templates(settings.templates_dir)


def deploy(
    template: ServingTemplate,
    plans: dict[str, ResourcePlan],
    settings: Settings,
    *,
    parameters: dict[str, str] | None = None,
    artifacts: dict[str, str] | None = None,
) -> dict[str, Any]:
    return render(
        template, deployment_id="d0a1b2c3", group="team-a", parameters=parameters or {},
        artifacts={"model": MODEL} if artifacts is None else artifacts, plans=plans, settings=settings,
    )


def sap_template(
    spec: str, *, inputs: str = "", name: str = "custom", labels: str | None = None
) -> ServingTemplate:
    """A ServingTemplate in SAP's format with the given inputs and InferenceService spec (block string)."""
    labels = labels if labels is not None else 'ai.sap.com/resourcePlan: "{{inputs.parameters.resourcePlan}}"'
    text = textwrap.dedent(
        """\
        apiVersion: ai.sap.com/v1alpha1
        kind: ServingTemplate
        metadata:
          name: {name}
          annotations:
            scenarios.ai.sap.com/name: test
            executables.ai.sap.com/name: {name}
          labels:
            scenarios.ai.sap.com/id: test
            ai.sap.com/version: 1.0
        spec:
          inputs:
            parameters:
              - name: resourcePlan
                default: starter
        {inputs}
            artifacts:
              - name: model
          template:
            apiVersion: serving.kserve.io/v1beta1
            metadata:
              labels: |
        {labels}
            spec: |
        {spec}
        """
    ).format(
        name=name,
        inputs=textwrap.indent(textwrap.dedent(inputs), " " * 6),
        labels=textwrap.indent(labels, " " * 8),
        spec=textwrap.indent(textwrap.dedent(spec), " " * 6),
    )
    return ServingTemplate.from_yaml(text)


SKLEARN_SPEC = """\
    predictor:
      model:
        modelFormat: {name: sklearn}
        storageUri: "{{inputs.artifacts.model}}"
    """


# --- every template on every plan --------------------------------------------------------------


@pytest.mark.parametrize("plan", CPU_PLANS + GPU_PLANS)
@pytest.mark.parametrize("name", ["sklearn", "onnx"])
def test_every_template_renders_on_every_plan_into_an_inference_service_the_crd_accepts(
    name: str, plan: str, templates: dict[str, ServingTemplate], plans: dict[str, ResourcePlan],
    settings: Settings, crd_schema: dict[str, Any],
) -> None:
    isvc = deploy(templates[name], plans, settings, parameters={"resourcePlan": plan})

    jsonschema.Draft7Validator(crd_schema).validate(isvc)
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["kind"] == "InferenceService"
    assert isvc["metadata"]["name"] == "d0a1b2c3"
    assert isvc["metadata"]["namespace"] == "team-a"
    assert isvc["metadata"]["labels"] == {
        "ai.sap.com/resourcePlan": plan,
        "zeroserve.io/deployment-id": "d0a1b2c3",
        "zeroserve.io/resource-group": "team-a",
    }
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    model = isvc["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": name}
    assert model["storageUri"] == MODEL
    expected = {"cpu": plans[plan].cpu, "memory": plans[plan].memory}
    assert model["resources"]["requests"] == expected


SHIPPED_TEMPLATES = sorted(Settings().templates_dir.glob("*.yaml"))
SHIPPED_PLANS = load_resource_plans(Settings())
# A value for a parameter a template leaves without default (a container image, say): any string
# that reads as a name, a number and an image reference at once.
SAMPLE_VALUE = "1"


@pytest.mark.parametrize("plan", sorted(SHIPPED_PLANS), ids=str)
@pytest.mark.parametrize("path", SHIPPED_TEMPLATES, ids=lambda path: path.stem)
def test_every_shipped_template_on_every_plan_renders_what_the_crd_accepts_with_the_plan_s_resources(
    path: Path, plan: str, settings: Settings, crd_schema: dict[str, Any],
) -> None:
    """Every template in the templates directory (new ones too), with each plan's GPUs, CPU and memory."""
    template = ServingTemplate.from_yaml(path.read_text(encoding="utf-8"), source=str(path))
    parameters = {p.name: SAMPLE_VALUE for p in template.parameters if p.default is None}
    artifacts = {a.name: MODEL for a in template.artifacts}
    isvc = deploy(template, SHIPPED_PLANS, settings, parameters={**parameters, "resourcePlan": plan},
                  artifacts=artifacts)

    jsonschema.Draft7Validator(crd_schema).validate(isvc)
    validate_inference_service(isvc)
    chosen = SHIPPED_PLANS[plan]
    predictor = isvc["spec"]["predictor"]
    # The model container: KServe's model form or a framework form, else the kserve-container (or first).
    containers = predictor.get("containers") or []
    named = [c for c in containers if c.get("name") == "kserve-container"] or containers[:1]
    (container,) = [value for value in predictor.values() if isinstance(value, dict) and "resources" in value] + named
    gpus = {"nvidia.com/gpu": chosen.gpus} if chosen.gpus else {}
    assert container["resources"]["limits"] == {"cpu": chosen.cpu, "memory": chosen.memory, **gpus}
    assert container["resources"]["requests"] == {"cpu": chosen.cpu, "memory": chosen.memory}
    if chosen.gpus:
        assert predictor["nodeSelector"] == {"nvidia.com/gpu.product": chosen.gpu_type}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in predictor["tolerations"]
    else:
        assert "nodeSelector" not in predictor


def test_the_shipped_plans_include_gpu_plans_for_the_test_above() -> None:
    assert [name for name, plan in SHIPPED_PLANS.items() if plan.gpus] == GPU_PLANS
    assert {"sklearn", "onnx", "xgboost", "lightgbm"} <= {path.stem for path in SHIPPED_TEMPLATES}


def test_the_vendored_crd_schema_is_the_one_in_the_kserve_crd(crd_schema: dict[str, Any]) -> None:
    vendored = Path(zeroserve.templates.validation.__file__).parent / zeroserve.templates.validation.SCHEMA_FILE
    assert json.loads(vendored.read_text(encoding="utf-8")) == crd_schema
    assert vendored.stat().st_size < 1_000_000


def test_the_shipped_templates_are_sap_serving_templates_with_the_same_inputs(
    templates: dict[str, ServingTemplate],
) -> None:
    shipped = ("sklearn", "onnx", "xgboost", "lightgbm", "pytorch", "custom")
    assert set(templates) >= set(shipped)
    for template in (templates[name] for name in shipped):
        assert template.scenario_id == "model-serving"
        assert template.version == "1.0.0"
        # custom's image has no default: only its user knows it.
        assert {p.name: p.default for p in template.parameters} == {
            "resourcePlan": "starter", "deploymentMode": "Knative", "minReplicas": "0", "maxReplicas": "2",
            "scaleTarget": "4",
            "canaryTrafficPercent": "100", "requestTimeout": "", "maxRequestBody": "", "idleWindow": "fixed",
            **({"image": None} if template.name == "custom" else {}),
        }
        assert [a.name for a in template.artifacts] == ["model"]


@pytest.mark.parametrize("plan", CPU_PLANS + GPU_PLANS)
def test_a_torchscript_program_renders_for_kserve_s_triton_runtime_on_every_plan(
    plan: str, templates: dict[str, ServingTemplate], plans: dict[str, ResourcePlan],
    settings: Settings, crd_schema: dict[str, Any],
) -> None:
    isvc = deploy(templates["pytorch"], plans, settings, parameters={"resourcePlan": plan})

    jsonschema.Draft7Validator(crd_schema).validate(isvc)
    model = isvc["spec"]["predictor"]["model"]
    assert (model["modelFormat"], model["runtime"], model["protocolVersion"]) == (
        {"name": "pytorch"}, "kserve-tritonserver", "v2")
    assert model["storageUri"] == MODEL


@pytest.mark.parametrize("plan", CPU_PLANS + GPU_PLANS)
def test_the_custom_template_runs_the_user_s_image_with_the_model_as_storage_uri_on_every_plan(
    plan: str, templates: dict[str, ServingTemplate], plans: dict[str, ResourcePlan],
    settings: Settings, crd_schema: dict[str, Any],
) -> None:
    image = "docker.io/example/predictor:1"
    isvc = deploy(templates["custom"], plans, settings, parameters={"resourcePlan": plan, "image": image})

    jsonschema.Draft7Validator(crd_schema).validate(isvc)
    [container] = isvc["spec"]["predictor"]["containers"]
    assert (container["name"], container["image"]) == ("kserve-container", image)
    assert container["env"] == [{"name": "STORAGE_URI", "value": MODEL}]
    assert container["resources"]["limits"]["cpu"] == plans[plan].cpu
    with pytest.raises(InvalidConfiguration, match="needs parameter 'image'"):
        deploy(templates["custom"], plans, settings, parameters={"resourcePlan": plan})


def test_resource_plans_are_sap_s_published_figures(plans: dict[str, ResourcePlan]) -> None:
    assert {name: (p.gpus, p.cpu, p.memory) for name, p in plans.items()} == {
        "starter": (0, "1", "3G"),
        "basic": (0, "3", "11G"),
        "basic.8x": (0, "31", "116G"),
        "infer.s": (1, "3", "10G"),
        "infer.m": (1, "7", "26G"),
        "infer.l": (1, "15", "58G"),
        "train.l": (1, "7", "55G"),
    }
    assert {plans[name].gpu_type for name in GPU_PLANS} == {"Tesla-T4", "Tesla-V100-SXM2-16GB"}


# --- resource plans on the predictor -----------------------------------------------------------


@pytest.mark.parametrize("plan", GPU_PLANS)
def test_gpu_plans_ask_for_one_gpu_on_a_node_of_their_gpu_type_and_tolerate_its_taint(
    plan: str, templates: dict[str, ServingTemplate], plans: dict[str, ResourcePlan], settings: Settings,
) -> None:
    predictor = deploy(templates["sklearn"], plans, settings, parameters={"resourcePlan": plan})["spec"][
        "predictor"
    ]

    assert predictor["model"]["resources"]["limits"] == {
        "cpu": plans[plan].cpu, "memory": plans[plan].memory, "nvidia.com/gpu": 1,
    }
    assert predictor["nodeSelector"] == {"nvidia.com/gpu.product": plans[plan].gpu_type}
    assert predictor["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


@pytest.mark.parametrize("plan", CPU_PLANS)
def test_cpu_plans_ask_for_no_gpu_and_no_gpu_node(
    plan: str, templates: dict[str, ServingTemplate], plans: dict[str, ResourcePlan], settings: Settings,
) -> None:
    predictor = deploy(templates["onnx"], plans, settings, parameters={"resourcePlan": plan})["spec"][
        "predictor"
    ]

    assert predictor["model"]["resources"]["limits"] == {"cpu": plans[plan].cpu, "memory": plans[plan].memory}
    assert "nodeSelector" not in predictor
    assert "tolerations" not in predictor


def test_gpu_node_label_and_taint_come_from_settings(
    templates: dict[str, ServingTemplate], plans: dict[str, ResourcePlan],
) -> None:
    settings = Settings(gpu_node_label="accelerator", gpu_taint_key="gpu.example.com/dedicated")
    predictor = deploy(templates["sklearn"], plans, settings, parameters={"resourcePlan": "infer.s"})["spec"][
        "predictor"
    ]

    assert predictor["nodeSelector"] == {"accelerator": "Tesla-T4"}
    assert predictor["tolerations"][0]["key"] == "gpu.example.com/dedicated"


def test_the_plan_not_the_template_decides_the_resources(
    plans: dict[str, ResourcePlan], settings: Settings,
) -> None:
    template = sap_template(
        """\
        predictor:
          tolerations:
            - {key: dedicated, operator: Equal, value: ml, effect: NoSchedule}
          model:
            modelFormat: {name: sklearn}
            storageUri: "{{inputs.artifacts.model}}"
            resources:
              requests: {cpu: 100m, memory: 1Gi, ephemeral-storage: 5Gi}
              limits: {nvidia.com/gpu: 8}
        """
    )
    starter = deploy(template, plans, settings)["spec"]["predictor"]
    gpu = deploy(template, plans, settings, parameters={"resourcePlan": "infer.s"})["spec"]["predictor"]

    assert starter["model"]["resources"] == {
        "requests": {"cpu": "1", "memory": "3G", "ephemeral-storage": "5Gi"},
        "limits": {"cpu": "1", "memory": "3G"},
    }
    assert gpu["model"]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert gpu["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    ]


def test_a_custom_container_template_gets_the_plan_on_its_kserve_container(
    plans: dict[str, ResourcePlan], settings: Settings,
) -> None:
    template = sap_template(
        """\
        predictor:
          containers:
            - name: kserve-container
              image: docker.io/example/server:1
              env:
                - name: STORAGE_URI
                  value: "{{inputs.artifacts.model}}"
        """
    )
    container = deploy(template, plans, settings, parameters={"resourcePlan": "basic"})["spec"]["predictor"][
        "containers"
    ][0]

    assert container["env"] == [{"name": "STORAGE_URI", "value": MODEL}]
    assert container["resources"]["limits"] == {"cpu": "3", "memory": "11G"}


# --- parameters and artifacts ------------------------------------------------------------------


def test_template_defaults_scale_to_zero_on_concurrency(
    templates: dict[str, ServingTemplate], plans: dict[str, ResourcePlan], settings: Settings,
) -> None:
    predictor = deploy(templates["sklearn"], plans, settings)["spec"]["predictor"]

    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (0, 2)
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("concurrency", 4)
    assert predictor["model"]["resources"]["limits"] == {"cpu": "1", "memory": "3G"}


def test_parameters_override_the_template_defaults(
    templates: dict[str, ServingTemplate], plans: dict[str, ResourcePlan], settings: Settings,
) -> None:
    isvc = deploy(
        templates["onnx"], plans, settings,
        parameters={"resourcePlan": "basic", "minReplicas": "1", "maxReplicas": "5", "scaleTarget": "10"},
    )
    predictor = isvc["spec"]["predictor"]

    assert (predictor["minReplicas"], predictor["maxReplicas"], predictor["scaleTarget"]) == (1, 5, 10)
    assert isvc["metadata"]["labels"]["ai.sap.com/resourcePlan"] == "basic"
    assert predictor["model"]["resources"]["requests"] == {"cpu": "3", "memory": "11G"}


def test_a_template_without_replica_bounds_scales_between_zero_and_one(
    plans: dict[str, ResourcePlan], settings: Settings,
) -> None:
    predictor = deploy(sap_template(SKLEARN_SPEC), plans, settings)["spec"]["predictor"]

    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (0, 1)


def test_a_template_may_choose_standard_mode_under_its_old_name_too(
    plans: dict[str, ResourcePlan], settings: Settings,
) -> None:
    fields = sap_template(SKLEARN_SPEC.replace("predictor:", "predictor:\n      minReplicas: 1")).model_dump()
    fields["template"]["annotations"] = "serving.kserve.io/deploymentMode: RawDeployment\nteam: ml\n"
    isvc = deploy(ServingTemplate.model_validate(fields), plans, settings)

    # KServe reads RawDeployment as Standard; zeroserve writes the name KServe uses now.
    assert isvc["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "Standard",
                                               "serving.kserve.io/autoscalerClass": "hpa", "team": "ml"}

    fields["template"]["annotations"] = "serving.kserve.io/deploymentMode: Serverless\n"
    assert deploy(ServingTemplate.model_validate(fields), plans, settings)["metadata"]["annotations"] == {
        "serving.kserve.io/deploymentMode": "Knative"}


# --- KServe's two modes, chosen per deployment ---------------------------------------------------


PROMETHEUS = "http://prometheus-operated.monitoring:9090"


@pytest.mark.parametrize("name", ["sklearn", "onnx", "huggingface", "custom"])
def test_standard_mode_scales_to_zero_through_keda_on_the_gateways_metrics_of_that_deployment(
    name: str, templates: dict[str, ServingTemplate], plans: dict[str, ResourcePlan], crd_schema: dict[str, Any],
) -> None:
    settings = Settings(kserve_prometheus_url=PROMETHEUS, idle_window_s=120)
    parameters = {"deploymentMode": "Standard", "scaleTarget": "3"}
    if name == "custom":
        parameters["image"] = "registry.example.com/team/model:1.0"
    isvc = deploy(templates[name], plans, settings, parameters=parameters)

    jsonschema.Draft7Validator(crd_schema).validate(isvc)
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "keda"
    predictor = isvc["spec"]["predictor"]
    assert predictor["minReplicas"] == 0
    # KServe refuses scaleMetric with KEDA, and a canary share is Knative's.
    assert "scaleMetric" not in predictor and "canaryTrafficPercent" not in predictor
    in_flight, recent = predictor["autoScaling"]["metrics"]
    selector = '{group="team-a",deployment="d0a1b2c3"}'
    assert in_flight == {"type": "External", "external": {
        "metric": {"backend": "prometheus", "serverAddress": PROMETHEUS,
                   "query": f"sum(zeroserve_inference_requests_in_flight{selector})"},
        "target": {"type": "Value", "value": "3"}}}
    assert recent["external"]["metric"]["query"] == (
        f"clamp_max(sum(increase(zeroserve_inference_requests_total{selector}[120s])), 1)")
    assert recent["external"]["target"] == {"type": "Value", "value": "1"}


def test_standard_mode_reads_an_rps_target_as_requests_per_second_at_the_gateway(
    plans: dict[str, ResourcePlan],
) -> None:
    spec = SKLEARN_SPEC.replace("predictor:", "predictor:\n      scaleMetric: rps\n      scaleTarget: 20")
    fields = sap_template(spec).model_dump()
    fields["template"]["annotations"] = "serving.kserve.io/deploymentMode: Standard\n"
    isvc = deploy(ServingTemplate.model_validate(fields), plans, Settings(kserve_prometheus_url=PROMETHEUS))

    load = isvc["spec"]["predictor"]["autoScaling"]["metrics"][0]["external"]
    assert load["metric"]["query"] == (
        'sum(rate(zeroserve_inference_requests_total{group="team-a",deployment="d0a1b2c3"}[60s]))')
    assert load["target"]["value"] == "20"


def test_standard_mode_without_a_metric_source_keeps_a_replica_and_refuses_to_promise_zero(
    templates: dict[str, ServingTemplate], plans: dict[str, ResourcePlan], settings: Settings,
    crd_schema: dict[str, Any],
) -> None:
    assert settings.kserve_prometheus_url is None
    with pytest.raises(InvalidConfiguration, match="scales to zero only through KEDA with a metric source") as no:
        deploy(templates["sklearn"], plans, settings, parameters={"deploymentMode": "Standard"})
    assert "ZEROSERVE_KSERVE_PROMETHEUS_URL" in no.value.message

    isvc = deploy(templates["sklearn"], plans, settings,
                  parameters={"deploymentMode": "Standard", "minReplicas": "1", "maxReplicas": "3"})

    jsonschema.Draft7Validator(crd_schema).validate(isvc)
    assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "hpa"
    predictor = isvc["spec"]["predictor"]
    # A concurrency target means nothing to an HPA: KServe's default, CPU at 80%.
    assert (predictor["minReplicas"], predictor["maxReplicas"], predictor["scaleMetric"]) == (1, 3, "cpu")
    assert "scaleTarget" not in predictor and "autoScaling" not in predictor


def test_a_deployment_mode_kserve_does_not_have_or_a_canary_in_standard_mode_is_refused(
    templates: dict[str, ServingTemplate], plans: dict[str, ResourcePlan],
) -> None:
    settings = Settings(kserve_prometheus_url=PROMETHEUS)
    with pytest.raises(InvalidConfiguration, match="'Raw' is not a KServe deployment mode; use Knative .* or Standard"):
        deploy(templates["sklearn"], plans, settings, parameters={"deploymentMode": "Raw"})
    with pytest.raises(InvalidConfiguration, match="canaryTrafficPercent 10 needs Knative mode"):
        deploy(templates["sklearn"], plans, settings,
               parameters={"deploymentMode": "Standard", "canaryTrafficPercent": "10"})

    cpu_spec = SKLEARN_SPEC.replace(
        "predictor:", "predictor:\n      scaleMetric: cpu\n      minReplicas: {{inputs.parameters.minReplicas}}")
    fields = sap_template(cpu_spec, inputs="- name: minReplicas\n  default: '0'\n").model_dump()
    fields["template"]["annotations"] = "serving.kserve.io/deploymentMode: Standard\n"
    cpu = ServingTemplate.model_validate(fields)
    with pytest.raises(InvalidConfiguration, match="means KServe's HPA, which keeps at least one replica"):
        deploy(cpu, plans, settings)
    kept = deploy(cpu, plans, settings, parameters={"minReplicas": "2"})
    assert kept["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "hpa"
    assert (kept["spec"]["predictor"]["scaleMetric"], kept["spec"]["predictor"]["minReplicas"]) == ("cpu", 2)


@pytest.mark.parametrize(("annotations", "predictor", "refusal"), [
    ({"serving.kserve.io/deploymentMode": "Standard", "serving.kserve.io/autoscalerClass": "hpa"},
     {"scaleMetric": "concurrency"}, "an HPA .* scales on cpu or memory"),
    ({"serving.kserve.io/deploymentMode": "Standard", "serving.kserve.io/autoscalerClass": "hpa"},
     {"scaleMetric": "cpu", "scaleTarget": 400}, "a CPU utilization is 1 to 100"),
    ({"serving.kserve.io/deploymentMode": "Standard", "serving.kserve.io/autoscalerClass": "keda"},
     {"scaleMetric": "cpu"}, "does not take scaleMetric with KEDA"),
    ({"serving.kserve.io/deploymentMode": "Standard", "serving.kserve.io/autoscalerClass": "keda"},
     {"autoScaling": {"metrics": [{"type": "External", "external": {
         "metric": {"backend": "prometheus", "query": ""}, "target": {"type": "Value", "value": "1"}}}]}},
     "needs a query and a target value"),
    ({"serving.kserve.io/deploymentMode": "Knative"}, {"scaleMetric": "cpu"}, "scales on concurrency or rps"),
    ({"serving.kserve.io/deploymentMode": "Knative"}, {"deploymentStrategy": {"type": "Recreate"}},
     "deploymentStrategy is for Standard mode only"),
    ({"serving.kserve.io/autoscalerClass": "kpa"}, {}, "'kpa' is not one of hpa, external, keda, none"),
])
def test_the_autoscaler_rules_of_kserves_webhook_are_checked_before_kserve_sees_the_object(
    annotations: dict[str, str], predictor: dict[str, Any], refusal: str,
) -> None:
    isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "iris", "namespace": "team-a", "annotations": annotations},
            "spec": {"predictor": {"minReplicas": 1, "model": {"modelFormat": {"name": "sklearn"}}, **predictor}}}

    with pytest.raises(InvalidConfiguration, match=refusal):
        validate_inference_service(isvc)


def test_placeholders_may_have_spaces_inside_their_braces(
    plans: dict[str, ResourcePlan], settings: Settings,
) -> None:
    template = sap_template(
        """\
        predictor:
          minReplicas: {{ inputs.parameters.replicas }}
          model:
            modelFormat: {name: sklearn}
            storageUri: "{{  inputs.artifacts.model  }}"
        """,
        inputs="- name: replicas\n  default: '3'\n",
        labels='ai.sap.com/resourcePlan: "{{ inputs.parameters.resourcePlan }}"',
    )
    isvc = deploy(template, plans, settings, parameters={"resourcePlan": "basic"})

    assert (isvc["spec"]["predictor"]["minReplicas"], isvc["spec"]["predictor"]["maxReplicas"]) == (3, 3)
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == MODEL
    assert isvc["metadata"]["labels"]["ai.sap.com/resourcePlan"] == "basic"


def test_a_template_may_write_its_parts_as_mappings(
    plans: dict[str, ResourcePlan], settings: Settings
) -> None:
    text = textwrap.dedent(
        """\
        apiVersion: ai.sap.com/v1alpha1
        kind: ServingTemplate
        metadata:
          name: mapped
          annotations: {scenarios.ai.sap.com/name: test}
          labels: {scenarios.ai.sap.com/id: test, ai.sap.com/version: "2"}
        spec:
          inputs:
            parameters: [{name: plan, default: basic}]
            artifacts: [{name: model}]
          template:
            apiVersion: serving.kserve.io/v1beta1
            metadata:
              labels:
                ai.sap.com/resourcePlan: "{{inputs.parameters.plan}}"
            spec:
              predictor:
                maxReplicas: 3
                model:
                  modelFormat: {name: sklearn}
                  storageUri: "{{inputs.artifacts.model}}"
        """
    )
    isvc = deploy(ServingTemplate.from_yaml(text), plans, settings)

    assert isvc["metadata"]["labels"]["ai.sap.com/resourcePlan"] == "basic"
    assert isvc["spec"]["predictor"]["maxReplicas"] == 3
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == MODEL


def test_an_unknown_parameter_is_refused_naming_the_template_s_parameters(
    templates: dict[str, ServingTemplate], plans: dict[str, ResourcePlan], settings: Settings,
) -> None:
    with pytest.raises(InvalidConfiguration, match="no parameter 'replicas'") as refused:
        deploy(templates["sklearn"], plans, settings, parameters={"replicas": "3"})

    named = "idleWindow, maxReplicas, maxRequestBody, minReplicas, requestTimeout, resourcePlan, scaleTarget"
    assert named in refused.value.message
    assert refused.value.reason == "InvalidConfiguration"


def test_a_parameter_without_default_must_be_given(
    plans: dict[str, ResourcePlan], settings: Settings
) -> None:
    template = sap_template(
        """\
        predictor:
          model:
            modelFormat: {name: sklearn}
            storageUri: "{{inputs.artifacts.model}}"
            runtimeVersion: "{{inputs.parameters.runtimeVersion}}"
        """,
        inputs="- name: runtimeVersion\n",
    )
    with pytest.raises(InvalidConfiguration, match="needs parameter 'runtimeVersion'"):
        deploy(template, plans, settings)

    isvc = deploy(template, plans, settings, parameters={"runtimeVersion": "1.5"})
    assert isvc["spec"]["predictor"]["model"]["runtimeVersion"] == "1.5"


def test_a_missing_artifact_is_refused(
    templates: dict[str, ServingTemplate], plans: dict[str, ResourcePlan], settings: Settings,
) -> None:
    with pytest.raises(InvalidConfiguration, match="needs an artifact bound to input 'model'"):
        deploy(templates["sklearn"], plans, settings, artifacts={})


def test_an_unknown_artifact_input_is_refused(
    templates: dict[str, ServingTemplate], plans: dict[str, ResourcePlan], settings: Settings,
) -> None:
    with pytest.raises(InvalidConfiguration, match="no artifact 'weights'; its artifacts: model"):
        deploy(templates["sklearn"], plans, settings, artifacts={"model": MODEL, "weights": MODEL})


def test_an_unknown_resource_plan_is_refused_listing_the_known_plans(
    templates: dict[str, ServingTemplate], plans: dict[str, ResourcePlan], settings: Settings,
) -> None:
    with pytest.raises(InvalidConfiguration, match="unknown resource plan 'infer.xl'") as refused:
        deploy(templates["sklearn"], plans, settings, parameters={"resourcePlan": "infer.xl"})

    assert "basic, basic.8x, infer.l, infer.m, infer.s, starter, train.l" in refused.value.message


# --- injection ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1\nfoo: bar", "{foo: bar}", "[1, 2]", "1 # comment", "&a 1", "*a"])
def test_a_parameter_value_cannot_add_structure_where_a_number_belongs(
    value: str, templates: dict[str, ServingTemplate], plans: dict[str, ResourcePlan], settings: Settings,
) -> None:
    not_an_integer = r"spec\.predictor\.minReplicas: .* is not of type 'integer'"
    with pytest.raises(InvalidConfiguration, match=not_an_integer):
        deploy(templates["sklearn"], plans, settings, parameters={"minReplicas": value})


def test_a_value_with_quotes_and_newlines_stays_one_string(
    templates: dict[str, ServingTemplate], plans: dict[str, ResourcePlan], settings: Settings,
) -> None:
    uri = 's3://models/x"\n  foo: bar\nkind: Pod\n#'
    isvc = deploy(templates["sklearn"], plans, settings, artifacts={"model": uri})

    assert isvc["kind"] == "InferenceService"
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == uri
    model = isvc["spec"]["predictor"]["model"]
    assert set(model) == {"modelFormat", "storageUri", "resources"}


def test_a_plan_label_value_cannot_add_labels(
    templates: dict[str, ServingTemplate], plans: dict[str, ResourcePlan], settings: Settings,
) -> None:
    with pytest.raises(InvalidConfiguration, match="unknown resource plan"):
        deploy(templates["onnx"], plans, settings, parameters={"resourcePlan": 'starter"\nadmin: "true'})


# --- validation --------------------------------------------------------------------------------


@pytest.fixture
def isvc(
    templates: dict[str, ServingTemplate], plans: dict[str, ResourcePlan], settings: Settings
) -> dict[str, Any]:
    return deploy(templates["sklearn"], plans, settings)


def test_a_rendered_inference_service_passes_validation(isvc: dict[str, Any]) -> None:
    validate_inference_service(isvc)


def test_a_non_integer_replica_count_is_refused_with_its_path(isvc: dict[str, Any]) -> None:
    isvc["spec"]["predictor"]["minReplicas"] = "abc"
    with pytest.raises(InvalidConfiguration, match=r"predictor\.minReplicas: 'abc' is not of type 'integer'"):
        validate_inference_service(isvc)


def test_negative_or_crossed_replica_bounds_are_refused_as_kserve_does(isvc: dict[str, Any]) -> None:
    isvc["spec"]["predictor"]["minReplicas"] = -1
    with pytest.raises(InvalidConfiguration, match="minReplicas cannot be less than 0"):
        validate_inference_service(isvc)
    isvc["spec"]["predictor"].update(minReplicas=3, maxReplicas=2)
    with pytest.raises(InvalidConfiguration, match=r"minReplicas \(3\) cannot be greater than maxReplicas"):
        validate_inference_service(isvc)
    isvc["spec"]["predictor"].update(minReplicas=3, maxReplicas=0)
    validate_inference_service(isvc)


def test_an_unknown_predictor_field_is_refused_not_silently_dropped(isvc: dict[str, Any]) -> None:
    isvc["spec"]["predictor"]["replicas"] = 2
    with pytest.raises(InvalidConfiguration, match=r"spec\.predictor: .*'replicas' was unexpected"):
        validate_inference_service(isvc)


def test_a_bad_scale_metric_or_quantity_is_refused(isvc: dict[str, Any]) -> None:
    isvc["spec"]["predictor"]["scaleMetric"] = "latency"
    with pytest.raises(InvalidConfiguration, match=r"spec\.predictor\.scaleMetric: 'latency' is not one of"):
        validate_inference_service(isvc)
    isvc["spec"]["predictor"]["scaleMetric"] = "rps"
    isvc["spec"]["predictor"]["model"]["resources"]["limits"]["memory"] = "lots"
    with pytest.raises(InvalidConfiguration, match=r"spec\.predictor\.model\.resources\.limits\.memory"):
        validate_inference_service(isvc)


def test_kserve_needs_a_name_that_starts_with_a_letter(isvc: dict[str, Any]) -> None:
    isvc["metadata"]["name"] = "0a1b2c3d"
    with pytest.raises(InvalidConfiguration, match="starting with a letter"):
        validate_inference_service(isvc)


def test_label_values_must_be_kubernetes_label_values(isvc: dict[str, Any]) -> None:
    isvc["metadata"]["labels"]["team"] = "machine learning"
    with pytest.raises(InvalidConfiguration, match="label team='machine learning' is invalid"):
        validate_inference_service(isvc)


# --- loading templates -------------------------------------------------------------------------


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_a_template_that_is_not_yaml_is_refused_naming_the_file(tmp_path: Path) -> None:
    write(tmp_path, "broken.yaml", "apiVersion: ai.sap.com/v1alpha1\nkind: [ServingTemplate\n")
    with pytest.raises(InvalidConfiguration, match=r"broken\.yaml is not valid YAML"):
        load_templates(tmp_path)


def test_a_template_missing_its_scenario_is_refused_naming_the_file_and_the_field(
    tmp_path: Path, settings: Settings,
) -> None:
    text = (settings.templates_dir / "sklearn.yaml").read_text(encoding="utf-8")
    write(tmp_path, "noscenario.yaml", text.replace('scenarios.ai.sap.com/id: "model-serving"', "team: ml"))
    missing = r"noscenario\.yaml: metadata\.labels\.scenarios\.ai\.sap\.com/id: Field required"
    with pytest.raises(InvalidConfiguration, match=missing):
        load_templates(tmp_path)


def test_a_template_using_an_undeclared_parameter_is_refused(tmp_path: Path, settings: Settings) -> None:
    text = (settings.templates_dir / "sklearn.yaml").read_text(encoding="utf-8")
    write(tmp_path, "typo.yaml", text.replace("parameters.scaleTarget}}", "parameters.scaleTraget}}"))
    undeclared = r"typo\.yaml: .*spec\.inputs\.parameters declares no 'scaleTraget'"
    with pytest.raises(InvalidConfiguration, match=undeclared):
        load_templates(tmp_path)


def test_a_malformed_placeholder_is_refused(tmp_path: Path, settings: Settings) -> None:
    text = (settings.templates_dir / "sklearn.yaml").read_text(encoding="utf-8")
    write(tmp_path, "bad.yaml", text.replace("{{inputs.artifacts.model}}", "{{inputs.artifact.model}}"))
    with pytest.raises(InvalidConfiguration, match=r"'\{\{inputs\.artifact\.model\}\}' is not a placeholder"):
        load_templates(tmp_path)


def test_two_templates_with_one_name_are_refused(tmp_path: Path, settings: Settings) -> None:
    text = (settings.templates_dir / "sklearn.yaml").read_text(encoding="utf-8")
    write(tmp_path, "a.yaml", text)
    write(tmp_path, "b.yaml", text)
    with pytest.raises(InvalidConfiguration, match="both define serving template 'sklearn'"):
        load_templates(tmp_path)


# --- resource plan overrides -------------------------------------------------------------------


def test_settings_override_a_plan_s_fields_and_add_plans(
    templates: dict[str, ServingTemplate],
) -> None:
    settings = Settings(resource_plans={
        "starter": {"memory": "2Gi"},
        "infer.xl": {"cpu": "31", "memory": "240G", "gpus": 4, "gpuType": "NVIDIA-A100-SXM4-80GB"},
    })
    plans = load_resource_plans(settings)

    assert plans["starter"] == ResourcePlan(name="starter", cpu="1", memory="2Gi")
    isvc = deploy(templates["sklearn"], plans, settings, parameters={"resourcePlan": "infer.xl"})
    predictor = isvc["spec"]["predictor"]
    assert predictor["model"]["resources"]["limits"] == {"cpu": "31", "memory": "240G", "nvidia.com/gpu": 4}
    assert predictor["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}


def test_an_override_may_change_a_gpu_plan_s_gpu_type(settings: Settings) -> None:
    plans = load_resource_plans(Settings(resource_plans={"infer.s": {"gpu_type": "NVIDIA-L4"}}))

    assert (plans["infer.s"].gpus, plans["infer.s"].gpu_type) == (1, "NVIDIA-L4")


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ({"starter": {"memory": "lots"}}, "resource plan 'starter'.*memory"),
        ({"tiny": {"memory": "1G"}}, "resource plan 'tiny'.*cpu: Field required"),
        ({"starter": {"gpus": -1}}, "resource plan 'starter'.*gpus"),
        ({"starter": {"disk": "10G"}}, "resource plan 'starter'.*disk: Extra inputs are not permitted"),
    ],
)
def test_a_bad_override_is_refused_naming_the_plan(
    override: dict[str, dict[str, object]], problem: str
) -> None:
    with pytest.raises(InvalidConfiguration, match=problem):
        load_resource_plans(Settings(resource_plans=override))


def test_a_missing_plans_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfiguration, match="cannot read resource plans .*nowhere.yaml"):
        load_resource_plans(Settings(resource_plans_file=tmp_path / "nowhere.yaml"))

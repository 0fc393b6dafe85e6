"""The cluster shape: what `kubectl kustomize manifests/overlays/<overlay>` builds, the image, skaffold.

No cluster here: the overlays are built with the real kubectl (offline), every core object is validated
against the Kubernetes 1.30 schema with kubernetes-validate, and the rest is checked against what the
code reads (Settings, the functions' consumers, the CLI's roles) and what a cluster admin cares about
(least privilege, non-root, Knative's feature flags). The Dockerfile cannot be built here (no Docker
engine): it is checked statically.
"""

from __future__ import annotations

import base64
import fnmatch
import functools
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from zeroserve.auth import signing_key
from zeroserve.core.bus import EVENTS_STREAM, servers
from zeroserve.core.nats_permissions import PERMISSIONS, cluster_config
from zeroserve.core.runner import load_functions
from zeroserve.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "manifests"
OVERLAYS = ("dev", "gpu", "ha")
# The NATS the control plane reaches: one server, or (ha) the three pods of the JetStream cluster.
SINGLE_NATS = "nats://nats.zeroserve.svc.cluster.local:4222"
NATS_PODS = [f"nats://nats-{n}.nats-headless.zeroserve.svc.cluster.local:4222" for n in range(3)]
ROLES = ("gateway", "functions", "watcher")
# Custom resources: kubernetes-validate knows only the core API.
CRD_KINDS = {"ScaledObject"}
KNATIVE_FEATURES = {
    "kubernetes.podspec-nodeselector": "enabled",
    "kubernetes.podspec-tolerations": "enabled",
    "kubernetes.podspec-affinity": "enabled",
}
MODEL_RULES = [
    {"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"],
     "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
]


@functools.cache
def build(overlay: str) -> tuple[dict[str, Any], ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not on PATH: these tests build the manifests with `kubectl kustomize` "
                    "(kubectl >= 1.27 bundles kustomize v5); install kubectl")
    built = subprocess.run([kubectl, "kustomize", str(MANIFESTS / "overlays" / overlay)],
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, f"kubectl kustomize manifests/overlays/{overlay} failed:\n{built.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(built.stdout) if doc)


def named(objects: tuple[dict[str, Any], ...], kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    """The object of that kind and name; a generated ConfigMap or Secret may carry kustomize's hash suffix."""
    found = [o for o in objects if o["kind"] == kind and re.fullmatch(rf"{re.escape(name)}(-[a-z0-9]{{10}})?",
                                                                        o["metadata"]["name"])
             and (namespace is None or o["metadata"].get("namespace") == namespace)]
    assert len(found) == 1, f"expected one {kind} {name!r}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def config(objects: tuple[dict[str, Any], ...]) -> dict[str, str]:
    return named(objects, "ConfigMap", "zeroserve-config", "zeroserve")["data"]


def pod_templates(objects: tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    return {f"{o['kind']}/{o['metadata']['name']}": o["spec"]["template"]["spec"]
            for o in objects if o["kind"] in ("Deployment", "StatefulSet")}


def control_plane(objects: tuple[dict[str, Any], ...], role: str) -> dict[str, Any]:
    return named(objects, "Deployment", role, "zeroserve")


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (zeroserve,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "zeroserve"]
    return zeroserve


def container_env(objects: tuple[dict[str, Any], ...], role: str) -> dict[str, str]:
    """The environment a control-plane container starts with, as the kubelet would give it."""
    deployment = control_plane(objects, role)
    env: dict[str, str] = {}
    for source in container(deployment).get("envFrom", []):
        env.update(named(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    for var in container(deployment).get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in var["valueFrom"]:
            ref = var["valueFrom"]["secretKeyRef"]
            secrets = [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == ref["name"]]
            # In the gpu overlay the user creates the Secret: any key of the allowed length stands in for it.
            env[var["name"]] = (base64.b64decode(secrets[0]["data"][ref["key"]]).decode() if secrets
                                else "a-key-the-user-created-of-32-chars-or-more")
        else:
            field = var["valueFrom"]["fieldRef"]["fieldPath"]
            env[var["name"]] = {"metadata.namespace": deployment["metadata"]["namespace"],
                                "metadata.name": f"{role}-5d8f7c9b4-x2x7q"}[field]
    return env


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_builds_the_whole_control_plane(overlay: str) -> None:
    objects = build(overlay)
    named(objects, "Namespace", "zeroserve")
    named(objects, "StatefulSet", "nats", "zeroserve")
    named(objects, "Service", "nats", "zeroserve")
    for role in ROLES:
        control_plane(objects, role)
    named(objects, "Service", "gateway", "zeroserve")
    named(objects, "ScaledObject", "functions", "zeroserve")
    named(objects, "ServiceAccount", "zeroserve", "zeroserve")
    named(objects, "ClusterRole", "zeroserve-models")
    named(objects, "Role", "zeroserve-leases", "zeroserve")
    named(objects, "RoleBinding", "zeroserve-leases", "zeroserve")
    for name in ("zeroserve-config", "zeroserve-templates", "zeroserve-resource-plans"):
        named(objects, "ConfigMap", name, "zeroserve")
    # What is not the control plane's own namespace is either a model namespace or Knative's.
    namespaces = {o["metadata"].get("namespace") for o in objects} - {None}
    assert namespaces <= {"zeroserve", "knative-serving", *json.loads(config(objects)["ZEROSERVE_KSERVE_NAMESPACES"])}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_serving_templates_and_plans_reach_the_cluster_unchanged(overlay: str) -> None:
    """The ConfigMaps carry exactly the files zeroserve reads on one machine (Settings' defaults)."""
    objects = build(overlay)
    defaults = Settings()
    paths = [*defaults.templates_dir.glob("*.yaml"), *defaults.templates_dir.glob("*.yml")]
    templates = {path.name: path.read_text(encoding="utf-8") for path in paths}
    shipped = named(objects, "ConfigMap", "zeroserve-templates", "zeroserve")["data"]
    hint = ("run `make manifests` (copies zeroserve/templates/builtin to manifests/base/templates) and list "
            "every template in manifests/base/kustomization.yaml")
    assert templates and shipped.keys() == templates.keys(), hint
    for name, text in templates.items():
        assert shipped[name] == text, f"{name}: {hint}"
    plans = named(objects, "ConfigMap", "zeroserve-resource-plans", "zeroserve")["data"]
    assert plans == {"resource-plans.yaml": defaults.resource_plans_file.read_text(encoding="utf-8")}, (
        "run `make manifests`: manifests/base/resource-plans.yaml is a copy of zeroserve/templates/resource-plans.yaml")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_setting_the_cluster_gives_is_one_zeroserve_reads(overlay: str) -> None:
    objects = build(overlay)
    for role in ROLES:
        env = container_env(objects, role)
        # Settings ignores unknown ZEROSERVE_ variables: a misspelt one would silently do nothing.
        unknown = {name for name in env if name.startswith("ZEROSERVE_")
                   and name.removeprefix("ZEROSERVE_").lower() not in Settings.model_fields}
        assert not unknown, f"{role}: no Settings field reads {sorted(unknown)}"
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            settings = Settings()
        assert settings.backend == "kserve"
        assert settings.kserve_namespaces == ["default"]
        assert settings.nats_url is not None
        assert servers(settings.nats_url) == (NATS_PODS if overlay == "ha" else [SINGLE_NATS])
        assert settings.nats_replicas == (3 if overlay == "ha" else 1)
        assert settings.nats_user == role and settings.nats_password is not None
        assert len(signing_key(settings)) >= 32
        if role == "watcher":
            assert settings.lease_namespace == "zeroserve"
            assert settings.pod_name and settings.pod_name.startswith("watcher-")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_control_plane_pods_mount_what_their_settings_point_at(overlay: str) -> None:
    objects = build(overlay)
    data = config(objects)
    for role in ROLES:
        deployment = control_plane(objects, role)
        assert container(deployment)["command"] == ["zeroserve", "up", "--role", role]
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        mounts = {m["mountPath"]: volumes[m["name"]] for m in container(deployment)["volumeMounts"]}
        templates = mounts[data["ZEROSERVE_TEMPLATES_DIR"]]["configMap"]["name"]
        assert templates == named(objects, "ConfigMap", "zeroserve-templates")["metadata"]["name"]
        plans_dir, plans_file = data["ZEROSERVE_RESOURCE_PLANS_FILE"].rsplit("/", 1)
        plans = named(objects, "ConfigMap", mounts[plans_dir]["configMap"]["name"])
        assert plans_file in plans["data"]
        # The root filesystem is read-only: the data directory and /tmp must be volumes.
        assert "emptyDir" in mounts[data["ZEROSERVE_DATA_DIR"]]
        assert "emptyDir" in mounts["/tmp"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_is_probed_and_served_on_its_port(overlay: str) -> None:
    objects = build(overlay)
    gateway = container(control_plane(objects, "gateway"))
    port = int(config(objects)["ZEROSERVE_GATEWAY_PORT"])
    ports = {p["name"]: p["containerPort"] for p in gateway["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        http = gateway[probe]["httpGet"]
        assert http["path"] == "/healthz"
        assert ports.get(http["port"], http["port"]) == port
    (service_port,) = named(objects, "Service", "gateway", "zeroserve")["spec"]["ports"]
    assert service_port["port"] == port
    assert ports.get(service_port["targetPort"], service_port["targetPort"]) == port


def test_every_role_the_manifests_start_is_one_the_cli_accepts(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from zeroserve.cli import app

    runner = CliRunner()
    for role in ROLES:
        # With the local backend the role is refused after parsing: the option and its value exist.
        result = runner.invoke(app, ["up", "--role", role], env={"ZEROSERVE_DATA_DIR": str(tmp_path)})
        assert result.exit_code == 1, (role, result.output)
        assert "needs ZEROSERVE_BACKEND=kserve" in str(result.exception), role
    refused = runner.invoke(app, ["up", "--role", "janitor"], env={"ZEROSERVE_DATA_DIR": str(tmp_path)})
    assert refused.exit_code == 2


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nats_keeps_jetstream_on_its_volume_and_serves_clients_and_monitoring(overlay: str) -> None:
    objects = build(overlay)
    nats = named(objects, "StatefulSet", "nats", "zeroserve")
    (server,) = nats["spec"]["template"]["spec"]["containers"]
    assert server["args"][:7] == ["-c", "/etc/nats/nats.conf", "-js", "-sd", "/data", "-m", "8222"]
    claims = {claim["metadata"]["name"] for claim in nats["spec"]["volumeClaimTemplates"]}
    assert {m["name"] for m in server["volumeMounts"] if m["mountPath"] == "/data"} <= claims
    assert any(m["mountPath"] == "/data" for m in server["volumeMounts"])
    ports = {p["port"] for p in named(objects, "Service", "nats", "zeroserve")["spec"]["ports"]}
    assert ports == {4222, 8222}
    assert servers(config(objects)["ZEROSERVE_NATS_URL"]) == (NATS_PODS if overlay == "ha" else [SINGLE_NATS])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_functions_scale_to_zero_on_the_lag_of_every_function(overlay: str) -> None:
    objects = build(overlay)
    scaled = named(objects, "ScaledObject", "functions", "zeroserve")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"]["name"] == control_plane(objects, "functions")["metadata"]["name"]
    assert scaled["spec"]["minReplicaCount"] == 0
    # KEDA owns the replica count; a fixed one in the Deployment would fight it on every apply.
    assert "replicas" not in control_plane(objects, "functions")["spec"]
    consumers = sorted(function.name for function in load_functions(Settings().functions_dir))
    triggers = scaled["spec"]["triggers"]
    assert sorted(t["metadata"]["consumer"] for t in triggers) == consumers, (
        "every function in zeroserve/functions/ needs a nats-jetstream trigger on its durable consumer "
        "in manifests/base/functions.yaml, or it is never scaled up for its events")
    for trigger in triggers:
        metadata = trigger["metadata"]
        assert trigger["type"] == "nats-jetstream"
        assert trigger["name"] == metadata["consumer"]
        assert metadata["natsServerMonitoringEndpoint"] == "nats.zeroserve.svc.cluster.local:8222"
        assert metadata["account"] == "$G"
        assert metadata["stream"] == EVENTS_STREAM
        assert int(metadata["lagThreshold"]) > 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_models_are_managed_only_in_the_model_namespaces(overlay: str) -> None:
    objects = build(overlay)
    assert not [o for o in objects if o["kind"] == "ClusterRoleBinding"]
    assert named(objects, "ClusterRole", "zeroserve-models")["rules"] == MODEL_RULES
    bindings = [o for o in objects if o["kind"] == "RoleBinding" and o["roleRef"]["name"] == "zeroserve-models"]
    model_namespaces = set(json.loads(config(objects)["ZEROSERVE_KSERVE_NAMESPACES"]))
    assert {b["metadata"]["namespace"] for b in bindings} == model_namespaces
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "ClusterRole"
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "zeroserve", "namespace": "zeroserve"}]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_watcher_at_a_time_holds_the_lease_and_nothing_more(overlay: str) -> None:
    objects = build(overlay)
    role = named(objects, "Role", "zeroserve-leases", "zeroserve")
    assert {(group, resource) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"]} == {("coordination.k8s.io", "leases")}
    assert {verb for rule in role["rules"] for verb in rule["verbs"]} == {"get", "create", "patch", "update"}
    for rule in role["rules"]:
        if set(rule["verbs"]) != {"create"}:
            assert rule.get("resourceNames") == ["zeroserve-watcher"]
    binding = named(objects, "RoleBinding", "zeroserve-leases", "zeroserve")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "zeroserve-leases"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "zeroserve", "namespace": "zeroserve"}]
    watcher = control_plane(objects, "watcher")
    assert watcher["spec"]["replicas"] == (1 if overlay == "dev" else 2)
    env = {v["name"]: v.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for v in container(watcher)["env"]}
    assert env["ZEROSERVE_LEASE_NAMESPACE"] == "metadata.namespace"
    assert env["ZEROSERVE_POD_NAME"] == "metadata.name"
    for role_name in ROLES:
        assert control_plane(objects, role_name)["spec"]["template"]["spec"]["serviceAccountName"] == "zeroserve"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_non_root_on_a_read_only_root_with_bounded_resources(overlay: str) -> None:
    for where, pod in pod_templates(build(overlay)).items():
        pod_context = pod.get("securityContext", {})
        for c in [*pod.get("initContainers", []), *pod["containers"]]:
            context = {**pod_context, **c.get("securityContext", {})}
            what = f"{where} container {c['name']}"
            assert context.get("runAsNonRoot") is True, what
            assert context.get("runAsUser", 0) != 0, what
            assert context.get("readOnlyRootFilesystem") is True, what
            assert context.get("allowPrivilegeEscalation") is False, what
            assert context.get("capabilities", {}).get("drop") == ["ALL"], what
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= c.get("resources", {}).get(bound, {}).keys(), f"{what}: {bound}"


def test_gpu_overlay_turns_on_the_knative_features_gpu_placement_needs() -> None:
    objects = build("gpu")
    features = named(objects, "ConfigMap", "config-features", "knative-serving")
    assert features["data"] == KNATIVE_FEATURES
    autoscaler = named(objects, "ConfigMap", "config-autoscaler", "knative-serving")
    assert autoscaler["data"] == {"allow-zero-initial-scale": "true"}
    # Knative's ConfigMaps are not ours: `kubectl delete -l app.kubernetes.io/part-of=zeroserve` spares them.
    for knative in (features, autoscaler):
        assert "app.kubernetes.io/part-of" not in knative["metadata"].get("labels", {})
    assert all(o["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "zeroserve"
               for o in objects if o["metadata"].get("namespace") != "knative-serving")
    data = config(objects)
    assert data["ZEROSERVE_GPU_NODE_LABEL"] == "nvidia.com/gpu.product"
    assert data["ZEROSERVE_GPU_TAINT_KEY"] == "nvidia.com/gpu"


def test_ha_overlay_runs_three_nats_routed_to_each_other_and_every_role_asks_for_three_replicas() -> None:
    objects = build("ha")
    nats = named(objects, "StatefulSet", "nats", "zeroserve")
    assert nats["spec"]["replicas"] == 3
    # Started together: the meta leader needs two of them, so OrderedReady would wait forever on nats-0.
    assert nats["spec"]["podManagementPolicy"] == "Parallel"
    pod = nats["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    flags = dict(arg.removeprefix("--").split("=", 1) for arg in server["args"] if arg.startswith("--"))
    # Each server is named after its pod (what KEDA's scaler and `nats server ls` show).
    assert flags["server_name"] == "$(POD_NAME)"
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in server["env"]
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    assert flags["cluster"] == f"nats://0.0.0.0:{ports['cluster']}"
    assert flags["cluster_name"]
    # A route to every peer, by its stable name through the headless Service, which publishes pods that are
    # not Ready yet (they must find each other to become Ready).
    headless = named(objects, "Service", nats["spec"]["serviceName"], "zeroserve")
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    assert {"name": "cluster", "port": ports["cluster"], "targetPort": "cluster"} in headless["spec"]["ports"]
    peers = {f"nats://nats-{n}.{headless['metadata']['name']}.zeroserve.svc.cluster.local:{ports['cluster']}"
             for n in range(nats["spec"]["replicas"])}
    assert set(flags["routes"].split(",")) == peers
    # A restarted pod is Ready (and a rolling update moves on) only once its streams have caught up.
    assert server["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "monitoring"}
    budget = named(objects, "PodDisruptionBudget", "nats", "zeroserve")
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"] == nats["spec"]["selector"]["matchLabels"]
    # Every zeroserve pod asks for three replicas and knows every server, reached on the client port.
    for role in ROLES:
        env = container_env(objects, role)
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            settings = Settings()
        assert settings.nats_replicas == nats["spec"]["replicas"], role
        assert settings.nats_url is not None
        assert servers(settings.nats_url) == [f"nats://nats-{n}.{headless['metadata']['name']}.zeroserve.svc."
                                              f"cluster.local:{ports['client']}" for n in range(3)], role


def test_dev_overlay_leaves_knative_alone() -> None:
    # skaffold dev deletes what it deployed when it stops: Knative's ConfigMaps must not be among them.
    assert not [o for o in build("dev") if o["metadata"].get("namespace") == "knative-serving"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_objects_are_valid_kubernetes_1_30(overlay: str) -> None:
    errors = []
    for obj in build(overlay):
        if obj["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, "1.30.0", strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path)
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {where}: {error.message}")
    assert not errors, "\n".join(errors)


def test_skaffold_builds_the_image_the_overlays_run() -> None:
    skaffold = yaml.safe_load((ROOT / "skaffold.yaml").read_text(encoding="utf-8"))
    assert skaffold["apiVersion"].startswith("skaffold/v4")
    assert skaffold["kind"] == "Config"
    (artifact,) = skaffold["build"]["artifacts"]
    assert (ROOT / artifact["docker"]["dockerfile"]).is_file()
    assert "kubectl" in skaffold["deploy"]
    paths = {"default": skaffold["manifests"]["kustomize"]["paths"]}
    paths |= {p["name"]: p["manifests"]["kustomize"]["paths"] for p in skaffold.get("profiles", [])}
    assert paths == {"default": ["manifests/overlays/dev"], "gpu": ["manifests/overlays/gpu"],
                     "ha": ["manifests/overlays/ha"]}
    for overlay in OVERLAYS:
        # skaffold swaps in the image it built for every image with the artifact's name, whatever its tag.
        for role in ROLES:
            image = container(control_plane(build(overlay), role))["image"]
            assert image.split(":")[0] == artifact["image"], f"{overlay} {role} runs {image}"


def test_skaffold_gpu_profile_patches_knative_and_never_applies_or_deletes_it() -> None:
    skaffold = yaml.safe_load((ROOT / "skaffold.yaml").read_text(encoding="utf-8"))
    (gpu,) = [p for p in skaffold["profiles"] if p["name"] == "gpu"]
    kubectl = gpu["deploy"]["kubectl"]
    ours = "--selector=app.kubernetes.io/part-of=zeroserve"
    assert ours in kubectl["flags"]["apply"] and ours in kubectl["flags"]["delete"]
    hooks = " ".join(" ".join(hook["host"]["command"]) for hook in kubectl["hooks"]["before"])
    for knative in [o for o in build("gpu") if o["metadata"].get("namespace") == "knative-serving"]:
        patch = f"manifests/base/knative/{knative['metadata']['name']}.yaml"
        assert f"patch --type merge -f {patch} --patch-file {patch}" in hooks
        assert yaml.safe_load((ROOT / patch).read_text(encoding="utf-8")) == knative


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def arguments(value: str) -> list[str]:
    return json.loads(value) if value.startswith("[") else shlex.split(value)


def test_dockerfile_runs_as_a_numeric_non_root_user_from_a_slim_multi_stage_build() -> None:
    instructions = dockerfile()
    stages = [args for op, args in instructions if op == "FROM"]
    assert len(stages) >= 2 and all(stage.startswith("python:3.11-slim") for stage in stages)
    final = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM"):]
    users = [args for op, args in final if op == "USER"]
    assert users, "the image must not run as root"
    # A numeric user, so the kubelet can check runAsNonRoot against it.
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0
    assert arguments(dict(final)["ENTRYPOINT"]) == ["zeroserve"]
    assert arguments(dict(final)["CMD"]) == ["up", "--role", "gateway"]
    assert "8700" in dict(final)["EXPOSE"].split()


def test_dockerfile_copies_what_exists_and_points_zeroserve_at_it() -> None:
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
               if line.strip() and not line.startswith("#")]
    assert {".git", ".venv", ".zeroserve", "tests"} <= set(ignored)
    copied: dict[str, str] = {}
    sources_copied: list[str] = []
    for op, args in dockerfile():
        if op != "COPY" or "--from=" in args:
            continue
        *sources, destination = [arg for arg in arguments(args) if not arg.startswith("--")]
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"
            parts = Path(source).parts
            excluded = [p for p in ignored for n in range(1, len(parts) + 1)
                        if fnmatch.fnmatch("/".join(parts[:n]), p)]
            assert not excluded, f"COPY {source}: .dockerignore leaves it out of the build context ({excluded})"
            copied[destination.rstrip("/")] = source
            sources_copied.append(source)
    env = {}
    for op, args in dockerfile():
        if op == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(args))
    # The wheel carries the functions, templates and plans (Settings' defaults): the image builds it from
    # these, and points zeroserve at no path of the repository.
    assert {"pyproject.toml", "README.md", "LICENSE", "zeroserve"} <= set(sources_copied)
    assert not {"ZEROSERVE_FUNCTIONS_DIR", "ZEROSERVE_TEMPLATES_DIR", "ZEROSERVE_RESOURCE_PLANS_FILE"} & env.keys()


# --- the cluster as its users meet it: the public URL, the route to it, one /metrics per role ----------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_role_starts_with_a_public_url_that_is_not_its_bind_address(overlay: str) -> None:
    from zeroserve.roles import checked_roles

    for role in ROLES:
        env = container_env(build(overlay), role)
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            settings = Settings()
        assert checked_roles([role], settings) == {role}  # refused without ZEROSERVE_PUBLIC_URL
        assert settings.gateway_url == env["ZEROSERVE_PUBLIC_URL"].rstrip("/")
        assert "0.0.0.0" not in settings.gateway_url


def test_the_base_leaves_the_public_url_to_the_overlay_and_a_pod_without_it_says_so() -> None:
    from zeroserve.roles import checked_roles

    base = yaml.safe_load((MANIFESTS / "base" / "kustomization.yaml").read_text())
    (literals,) = [g["literals"] for g in base["configMapGenerator"] if g["name"] == "zeroserve-config"]
    assert "ZEROSERVE_PUBLIC_URL=" in literals
    settings = Settings(backend="kserve", nats_url="nats://nats:4222", public_url="", gateway_host="0.0.0.0")
    with pytest.raises(SystemExit, match="set ZEROSERVE_PUBLIC_URL"):
        checked_roles(["gateway"], settings)


def test_the_route_examples_send_the_public_host_to_the_gateway_service() -> None:
    objects = build("gpu")
    host = config(objects)["ZEROSERVE_PUBLIC_URL"].removeprefix("https://")
    service = named(objects, "Service", "gateway", "zeroserve")
    (port,) = service["spec"]["ports"]
    ingress = yaml.safe_load((MANIFESTS / "examples" / "ingress.yaml").read_text())
    kubernetes_validate.validate(ingress, "1.30.0", strict=True)
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == host and ingress["metadata"]["namespace"] == "zeroserve"
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": "gateway", "port": {"name": port["name"]}}
    # The Gateway API's HTTPRoute is a custom resource kubernetes-validate does not know: its shape by hand.
    route = yaml.safe_load((MANIFESTS / "examples" / "httproute.yaml").read_text())
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1" and route["kind"] == "HTTPRoute"
    assert route["spec"]["hostnames"] == [host]
    (backend,) = route["spec"]["rules"][0]["backendRefs"]
    assert backend == {"name": "gateway", "port": port["port"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_role_is_scraped_on_the_port_where_it_serves_metrics(overlay: str) -> None:
    objects = build(overlay)
    for role in ROLES:
        deployment = control_plane(objects, role)
        port = container_env(objects, role)["ZEROSERVE_METRICS_PORT"]
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == port and annotations["prometheus.io/path"] == "/metrics"
        assert {"name": "metrics", "containerPort": int(port)} in container(deployment)["ports"]
    # Without a token: never on the Service the routes expose.
    service = named(objects, "Service", "gateway", "zeroserve")
    assert all(p["targetPort"] != "metrics" for p in service["spec"]["ports"])


async def test_a_role_without_http_serves_its_metrics_on_the_metrics_port(
    settings: Settings, cluster: Any, tmp_path: Path, nats_server: Any,
) -> None:
    import httpx
    from conftest import free_port

    from zeroserve.node import Node

    port = free_port()
    settings = settings.model_copy(update=dict(
        backend="kserve", kubeconfig=cluster.kubeconfig(tmp_path / "kubeconfig"), nats_url=nats_server.url,
        public_url="https://zeroserve.example.com", metrics_port=port))
    async with Node(settings, ["functions"]), httpx.AsyncClient() as http:
        answer = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert answer.status_code == 200
    assert "zeroserve_" in answer.text


# --- NATS: who may reach it, who may log in, and what each role may do ---------------------------------


def secret_ref(var: dict[str, Any]) -> tuple[str, str]:
    ref = var["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nats_lets_in_one_user_per_role_with_the_permissions_the_code_renders(overlay: str) -> None:
    objects = build(overlay)
    nats = named(objects, "StatefulSet", "nats", "zeroserve")["spec"]["template"]["spec"]
    (server,) = nats["containers"]
    # The configuration: the very text zeroserve/core/nats_permissions.py renders (`make manifests`).
    volumes = {v["name"]: v for v in nats["volumes"]}
    (mount,) = [m for m in server["volumeMounts"] if m["mountPath"] == "/etc/nats"]
    config_map = named(objects, "ConfigMap", "nats-config", "zeroserve")
    assert volumes[mount["name"]]["configMap"]["name"] == config_map["metadata"]["name"]
    assert server["args"][:2] == ["-c", "/etc/nats/nats.conf"]
    assert config_map["data"] == {"nats.conf": cluster_config()}, (
        "run `make manifests`: manifests/base/nats.conf is written from zeroserve/core/nats_permissions.py")
    # Its passwords: one key of one Secret per role, in the environment the configuration reads them from.
    passwords = {var["name"]: secret_ref(var) for var in server["env"] if "secretKeyRef" in var.get("valueFrom", {})}
    secret_names = set()
    for role in ROLES:
        name, key = passwords[f"NATS_{role.upper()}_PASSWORD"]
        assert key == role and f"$NATS_{role.upper()}_PASSWORD" in config_map["data"]["nats.conf"]
        secret_names.add(name)
    assert len(secret_names) == 1
    # Each role logs in as itself, with the password NATS checks for it, and reads replies under its own inbox.
    for role in ROLES:
        env = {var["name"]: var for var in container(control_plane(objects, role)).get("env", [])}
        assert env["ZEROSERVE_NATS_USER"]["value"] == role
        assert secret_ref(env["ZEROSERVE_NATS_PASSWORD"]) == passwords[f"NATS_{role.upper()}_PASSWORD"]
        assert env["ZEROSERVE_NATS_INBOX_PREFIX"]["value"] == PERMISSIONS[role].inbox_prefix
    secrets = [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] in secret_names]
    if overlay == "dev":  # generated, dev-only; elsewhere the user creates it (base/kustomization.yaml)
        (secret,) = secrets
        assert set(secret["data"]) == set(ROLES)
        assert len({secret["data"][role] for role in ROLES}) == len(ROLES), "one password per role"
    else:
        assert not secrets, "a Secret in the manifests would be the same, public password on every cluster"


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items()) and not selector.get(
        "matchExpressions")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_zeroserve_s_pods_reach_nats_and_keda_only_its_monitoring_port(overlay: str) -> None:
    objects = build(overlay)
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    nats_labels = named(objects, "StatefulSet", "nats", "zeroserve")["spec"]["template"]["metadata"]["labels"]
    (policy,) = [p for p in policies if matches(p["spec"]["podSelector"], nats_labels)]
    assert policy["metadata"]["namespace"] == "zeroserve" and "Ingress" in policy["spec"]["policyTypes"]
    rules = policy["spec"]["ingress"]
    by_port = {port["port"]: rule["from"] for rule in rules for port in rule["ports"]}
    assert set(by_port) == ({4222, 8222, 6222} if overlay == "ha" else {4222, 8222}), \
        "every rule names its port: no port is open to all"
    if overlay == "ha":  # the cluster's routes: from its own pods only
        (peers,) = by_port[6222]
        assert set(peers) == {"podSelector"}
        assert {where for where, pod in pod_templates_with_labels(objects).items()
                if matches(peers["podSelector"], pod)} == {"StatefulSet/nats"}
    # The client port: the pods of the gateway, the functions and the watcher, and no other pod of the build.
    (clients,) = by_port[4222]
    assert set(clients) == {"podSelector"}, "pods of the namespace zeroserve only"
    allowed = {where for where, pod in pod_templates_with_labels(objects).items()
               if matches(clients["podSelector"], pod)}
    assert allowed == {f"Deployment/{role}" for role in ROLES}
    # The monitoring port (consumer lag, no login) for KEDA's scaler, in KEDA's namespace.
    (keda,) = by_port[8222]
    assert keda == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}}
    scaled = named(objects, "ScaledObject", "functions", "zeroserve")
    assert {t["metadata"]["natsServerMonitoringEndpoint"] for t in scaled["spec"]["triggers"]} == {
        "nats.zeroserve.svc.cluster.local:8222"}


def pod_templates_with_labels(objects: tuple[dict[str, Any], ...]) -> dict[str, dict[str, str]]:
    return {f"{o['kind']}/{o['metadata']['name']}": o["spec"]["template"]["metadata"].get("labels", {})
            for o in objects if o["kind"] in ("Deployment", "StatefulSet")}


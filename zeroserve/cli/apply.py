"""``zeroserve apply -f FILE``: make the artifacts, configurations and deployment a YAML file describes
exist as it says (docs/cli.md has the format: kubectl-like documents of kind ``Artifact``,
``Configuration`` and ``Deployment``). Applying is idempotent: what already is as the file says is
left alone and reported ``unchanged``. SAP's artifacts and configurations cannot change, so a changed
one is created anew, and the deployment (known by its configuration's name) is updated in place to
it. ``--dry-run`` changes nothing, and prints the KServe InferenceService the deployment would get.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from zeroserve.cli.options import GroupOption, client_for
from zeroserve.cli.output import bad_input, console, err, failures
from zeroserve.cli.uploads import is_url, local_path, uploaded
from zeroserve.cli.watch import settled_or_exit, watch_deployment
from zeroserve.client import SERVING_SCENARIO, Client, Configuration, Deployment

API_VERSION = "zeroserve.io/v1"
# Deployments in these states serve no more: applying again makes a new one.
FINISHED = {"STOPPED", "DEAD", "STOPPING"}


class Document(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Metadata(Document):
    name: Annotated[str, Field(min_length=1, max_length=256)]


class ArtifactSpec(Document):
    url: str = Field(description="A URL, or a path (relative to the file) that is uploaded")
    kind: Literal["model", "dataset", "resultset", "other"] = "model"
    scenario: str = SERVING_SCENARIO
    description: str | None = None


class ConfigurationSpec(Document):
    executable: str
    scenario: str = SERVING_SCENARIO
    parameters: dict[str, str | int | float | bool] = {}
    # Template input -> the name of an Artifact in this file, or an artifact id.
    artifacts: dict[str, str] = {}


class DeploymentSpec(Document):
    configuration: str | None = None  # the Configuration's name; default: the deployment's own
    ttl: str | None = None


class Resource(Document):
    api_version: Literal["zeroserve.io/v1"] = Field("zeroserve.io/v1", alias="apiVersion")
    kind: Literal["Artifact", "Configuration", "Deployment"]
    metadata: Metadata
    spec: dict[str, Any] = {}


@dataclass
class Manifest:
    """What a file describes, by kind, in the order the file gives them."""

    artifacts: dict[str, ArtifactSpec] = field(default_factory=dict)
    configurations: dict[str, ConfigurationSpec] = field(default_factory=dict)
    deployments: dict[str, DeploymentSpec] = field(default_factory=dict)


def read_manifest(path: Path) -> Manifest:
    """The documents of ``path``, checked, or exit 2 naming the document and the field that is wrong."""
    try:
        documents = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]
    except OSError as error:
        raise bad_input(f"cannot read {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise bad_input(f"{path} is not YAML: {error}") from None
    manifest = Manifest()
    kinds: dict[str, tuple[type[Document], dict[str, Any]]] = {
        "Artifact": (ArtifactSpec, manifest.artifacts), "Configuration": (ConfigurationSpec, manifest.configurations),
        "Deployment": (DeploymentSpec, manifest.deployments)}
    for number, document in enumerate(documents, 1):
        try:
            resource = Resource.model_validate(document)
            model, into = kinds[resource.kind]
            into[resource.metadata.name] = model.model_validate(resource.spec)
        except ValidationError as error:
            first = error.errors(include_input=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "(the document)"
            raise bad_input(f"{path}, document {number}: {where}: {first['msg']}") from None
    for name, configuration in manifest.configurations.items():
        for given in configuration.artifacts.values():
            if given not in manifest.artifacts and not _looks_like_id(given):
                raise bad_input(f"{path}: configuration {name} binds artifact {given!r}, which the file does not "
                                "describe (name an Artifact of the file, or an artifact id)")
    for name, deployment in manifest.deployments.items():
        wanted = deployment.configuration or name
        if wanted not in manifest.configurations:
            raise bad_input(f"{path}: deployment {name} runs configuration {wanted!r}, which the file does not "
                            "describe")
    return manifest


def _looks_like_id(value: str) -> bool:
    return len(value) == 36 and value.count("-") == 4


@dataclass
class Applied:
    """What an apply did (or, dry, would do), resource by resource, and the ids it ended with."""

    dry_run: bool
    artifact_ids: dict[str, str] = field(default_factory=dict)
    artifact_urls: dict[str, str] = field(default_factory=dict)
    configuration_ids: dict[str, str] = field(default_factory=dict)

    def say(self, what: str, outcome: str) -> None:
        if self.dry_run:
            err.print(f"# {what} {outcome} (dry run)", highlight=False)
        else:
            console.print(f"{what} {outcome}", highlight=False)


def _artifact(zs: Client, name: str, spec: ArtifactSpec, base: Path, applied: Applied) -> None:
    url = spec.url if is_url(spec.url) else uploaded(zs, local_path(spec.url, base))
    same = [a for a in zs.artifacts(name=name)
            if a.url == url and a.kind == spec.kind and a.scenario_id == spec.scenario]
    if same:
        applied.artifact_ids[name] = same[-1].id
        applied.say(f"artifact/{name}", "unchanged")
    elif applied.dry_run:
        applied.artifact_urls[name] = url
        applied.say(f"artifact/{name}", "would be created")
    else:
        created = zs.create_artifact(name, url, kind=spec.kind, scenario_id=spec.scenario,
                                     description=spec.description)
        applied.artifact_ids[name] = created.id
        applied.say(f"artifact/{name}", f"created ({created.id})")


def _bindings(spec: ConfigurationSpec, applied: Applied) -> tuple[dict[str, str], dict[str, str]]:
    """The configuration's inputs: by artifact id, and (dry run, not registered yet) by URL."""
    ids = {key: applied.artifact_ids.get(given, given) for key, given in spec.artifacts.items()
           if given not in applied.artifact_urls}
    urls = {key: applied.artifact_urls[given] for key, given in spec.artifacts.items()
            if given in applied.artifact_urls}
    return ids, urls


def _parameters(spec: ConfigurationSpec) -> dict[str, str]:
    return {key: str(value).lower() if isinstance(value, bool) else str(value)
            for key, value in spec.parameters.items()}


def _same_configuration(found: Configuration, spec: ConfigurationSpec, artifacts: dict[str, str]) -> bool:
    return (found.executable_id == spec.executable and found.scenario_id == spec.scenario
            and {p.key: p.value for p in found.parameter_bindings} == _parameters(spec)
            and {a.key: a.artifact_id for a in found.input_artifact_bindings} == artifacts)


def _configuration(zs: Client, name: str, spec: ConfigurationSpec, applied: Applied) -> None:
    artifacts, urls = _bindings(spec, applied)
    same = [] if urls else [c for c in zs.configurations(executable_ids=[spec.executable])
                            if c.name == name and _same_configuration(c, spec, artifacts)]
    if same:
        applied.configuration_ids[name] = same[-1].id
        applied.say(f"configuration/{name}", "unchanged")
    elif applied.dry_run:
        applied.say(f"configuration/{name}", "would be created")
    else:
        created = zs.create_configuration(name, executable_id=spec.executable, scenario_id=spec.scenario,
                                          parameters=_parameters(spec), artifacts=artifacts)
        applied.configuration_ids[name] = created.id
        applied.say(f"configuration/{name}", f"created ({created.id})")


def serving(zs: Client, configuration_name: str) -> Deployment | None:
    """The deployment known by this configuration name that still serves (or is on its way to), if any."""
    found = [d for d in zs.deployments() if d.configuration_name == configuration_name
             and d.status not in FINISHED and d.target_status not in ("STOPPED", "DELETED")]
    return max(found, key=lambda d: d.created_at.timestamp() if d.created_at else 0.0) if found else None


def _deployment(zs: Client, name: str, spec: DeploymentSpec, applied: Applied) -> str | None:
    """Create or update the deployment; its id (None in a dry run of a new one)."""
    wanted = spec.configuration or name
    configuration_id = applied.configuration_ids.get(wanted)
    current = serving(zs, wanted)
    if current is not None and current.configuration_id == configuration_id:
        applied.say(f"deployment/{name}", f"unchanged ({current.id})")
    elif applied.dry_run:
        applied.say(f"deployment/{name}", "would be " + ("updated" if current else "created"))
    elif current is not None:
        assert configuration_id is not None
        zs.update_deployment(current.id, configuration_id)
        applied.say(f"deployment/{name}", f"updated ({current.id}: configuration {configuration_id})")
    else:
        assert configuration_id is not None
        created = zs.create_deployment(configuration_id, ttl=spec.ttl)
        applied.say(f"deployment/{name}", f"created ({created.id})")
        return created.id
    return current.id if current else None


def _rendering(zs: Client, manifest: Manifest, applied: Applied, name: str, deployment_id: str | None) -> None:
    spec = manifest.deployments[name]
    configuration = manifest.configurations[spec.configuration or name]
    artifacts, urls = _bindings(configuration, applied)
    rendered = zs.render_deployment(configuration.executable, parameters=_parameters(configuration),
                                    artifacts=artifacts, artifact_urls=urls, deployment_id=deployment_id)
    typer.echo("---\n" + yaml.safe_dump(rendered["inferenceService"], sort_keys=False), nl=False)


def apply(
    file: Annotated[Path, typer.Option("--filename", "-f", help="The YAML file (docs/cli.md has its format).")],
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Change nothing; print the InferenceService the deployment would get.")] = False,
    wait: Annotated[bool, typer.Option(help="Watch each deployment until it is RUNNING or DEAD.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for RUNNING (with --wait).")] = 300,
    group: GroupOption = None,
) -> None:
    """Make the artifacts, configurations and deployments of a YAML file exist as it says; again: unchanged."""
    manifest = read_manifest(file)
    applied = Applied(dry_run)
    with failures(), client_for(group) as zs:
        for name, artifact in manifest.artifacts.items():
            _artifact(zs, name, artifact, file.resolve().parent, applied)
        for name, configuration in manifest.configurations.items():
            _configuration(zs, name, configuration, applied)
        ids = {name: _deployment(zs, name, deployment, applied) for name, deployment in manifest.deployments.items()}
        if dry_run:
            for name, deployment_id in ids.items():
                _rendering(zs, manifest, applied, name, deployment_id)
            return
        for deployment_id in ids.values():
            if wait and deployment_id is not None:
                settled_or_exit(watch_deployment(zs, deployment_id, timeout), timeout)

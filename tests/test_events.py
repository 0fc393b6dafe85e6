"""The event contract: data models, subjects, and the generated schemas in events/."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from zeroserve.errors import MalformedEvent
from zeroserve.events import (
    EVENT_TYPES,
    ArtifactCreated,
    DeploymentRequested,
    DeploymentStatus,
    DeploymentStopped,
    Label,
    Status,
    deadletter_subject,
    group_of,
    new_event,
    parse_data,
    subject_for,
    write_schemas,
)

ROOT = Path(__file__).resolve().parent.parent
EVENTS_DIR = ROOT / "events"

# The catalogue of DESIGN.md ("Events"): type -> direction.
CATALOGUE = {
    "io.zeroserve.artifact.created": "in",
    "io.zeroserve.deployment.requested": "in",
    "io.zeroserve.deployment.stopped": "in",
    "io.zeroserve.deployment.deleted": "in",
    "io.zeroserve.artifact.status": "out",
    "io.zeroserve.configuration.created": "out",
    "io.zeroserve.deployment.status": "out",
    "io.zeroserve.deployment.log": "out",
}


def test_committed_schemas_match_the_models(tmp_path: Path) -> None:
    write_schemas(tmp_path)
    generated = {path.name: path.read_bytes() for path in tmp_path.glob("*.json")}
    committed = {path.name: path.read_bytes() for path in EVENTS_DIR.glob("*.json")}
    stale = sorted(name for name in generated if committed.get(name) != generated[name])
    extra = sorted(set(committed) - set(generated))
    assert not stale and not extra, (
        f"events/ is out of date with zeroserve/events.py (differ or missing: {stale}, "
        f"no longer generated: {extra}); regenerate with: python -m zeroserve.events events/"
    )


def test_every_catalogued_type_has_a_model_and_a_schema_file() -> None:
    assert set(EVENT_TYPES) == set(CATALOGUE)
    for event_type, model in EVENT_TYPES.items():
        assert model.event_type == event_type
        assert (EVENTS_DIR / f"{event_type}.json").is_file(), f"no schema file for {event_type}"


def test_events_readme_catalogue_lists_every_type_with_its_subject() -> None:
    rows = re.findall(
        r"^\| `(io\.zeroserve\.[a-z.]+)` \| (in|out) \| `([^`]+)` \|.*\| \[([^\]]+)\]",
        (EVENTS_DIR / "README.md").read_text(),
        flags=re.MULTILINE,
    )
    listed = {event_type: (direction, subject, schema) for event_type, direction, subject, schema in rows}
    assert set(listed) == set(CATALOGUE)
    for event_type, (direction, subject, schema) in listed.items():
        assert direction == CATALOGUE[event_type]
        assert subject_for(event_type, "g1") == subject.replace("<group>", "g1")
        assert schema == f"{event_type}.json"


def test_schema_command_writes_every_schema_file(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "zeroserve.events", str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    written = sorted(path.name for path in (tmp_path / "out").glob("*.json"))
    assert written == sorted(f"{event_type}.json" for event_type in CATALOGUE)
    assert len(result.stdout.splitlines()) == len(CATALOGUE)


def test_data_is_camel_case_on_the_wire_and_snake_case_in_python() -> None:
    requested = DeploymentRequested(
        id="iris",
        executable_id="sklearn",
        configuration_id="cfg-1",
        input_artifacts={"model": "iris-model"},
        parameters={"workers": "2"},
    )
    event = new_event(requested, source="/test")
    assert event.data == {
        "id": "iris",
        "executableId": "sklearn",
        "configurationId": "cfg-1",
        "parameters": {"workers": "2"},
        "inputArtifacts": {"model": "iris-model"},
    }
    assert parse_data(event) == requested


def test_new_event_fills_in_the_context_attributes() -> None:
    before = datetime.now().astimezone()
    event = new_event(DeploymentStopped(id="iris"), source="/cli/alice", subject="iris", causationid="ev-1")
    assert event["type"] == "io.zeroserve.deployment.stopped"
    assert event["source"] == "/cli/alice"
    assert event["subject"] == "iris"
    assert event["causationid"] == "ev-1"
    assert event["specversion"] == "1.0"
    assert event["datacontenttype"] == "application/json"
    assert uuid.UUID(event["id"]).version == 4
    time = datetime.fromisoformat(event["time"])
    assert time.utcoffset() == timedelta(0)
    assert before <= time <= datetime.now().astimezone()


def test_new_event_keeps_a_given_id_and_leaves_out_what_is_unset() -> None:
    event = new_event(ArtifactCreated(name="iris", url="file:///models/iris"), source="/test", id="fixed")
    assert event["id"] == "fixed"
    assert "subject" not in event and "causationid" not in event
    assert event.data == {"name": "iris", "kind": "model", "url": "file:///models/iris", "labels": [], "metrics": []}


def test_parse_data_names_the_missing_field() -> None:
    event = new_event(ArtifactCreated(name="iris", url="file:///m"), source="/test")
    del event.data["url"]
    with pytest.raises(MalformedEvent, match=r"data\.url: Field required"):
        parse_data(event)


def test_parse_data_names_nested_and_unknown_fields_by_their_wire_names() -> None:
    event = new_event(ArtifactCreated(name="iris", url="file:///m"), source="/test")
    event.data["labels"] = [{"key": "team"}]
    event.data["scenarioID"] = "typo"
    with pytest.raises(MalformedEvent) as caught:
        parse_data(event)
    assert "data.labels.0.value: Field required" in str(caught.value)
    assert "data.scenarioID: Extra inputs are not permitted" in str(caught.value)


def test_parse_data_rejects_an_unknown_event_type() -> None:
    event = new_event(DeploymentStopped(id="iris"), source="/test")
    event["type"] = "io.zeroserve.deployment.exploded"
    with pytest.raises(MalformedEvent, match="unknown event type 'io.zeroserve.deployment.exploded'"):
        parse_data(event)


def test_parse_data_rejects_data_that_is_not_an_object() -> None:
    event = new_event(DeploymentStopped(id="iris"), source="/test")
    event.data = None
    with pytest.raises(MalformedEvent, match=r"^MalformedEvent: io\.zeroserve\.deployment\.stopped: data: "):
        parse_data(event)


@pytest.mark.parametrize("bad", ["Iris", "iris_v2", "-iris", "iris-", "iris.v2", "", "a" * 64, "a", "d01"])
def test_id_that_cannot_be_a_kubernetes_name_or_an_ai_api_id_is_rejected(bad: str) -> None:
    """A deployment id becomes a Kubernetes name and is addressed by SAP's API (4 to 64 characters)."""
    with pytest.raises(ValidationError):
        DeploymentStopped(id=bad)
    event = new_event(DeploymentStopped(id="iris"), source="/test")
    event.data["id"] = bad
    with pytest.raises(MalformedEvent, match=r"data\.id: String should match pattern"):
        parse_data(event)


@pytest.mark.parametrize("good", ["iris", "7777", "iris-v2", "a" * 63])
def test_id_that_is_a_kubernetes_name_and_an_ai_api_id_is_accepted(good: str) -> None:
    assert DeploymentStopped(id=good).id == good


@pytest.mark.parametrize("ttl", ["30m", "2h", "1d", "120m"])
def test_ttl_in_minutes_hours_or_days_is_accepted(ttl: str) -> None:
    assert DeploymentRequested(id="iris", executable_id="sklearn", ttl=ttl).ttl == ttl


@pytest.mark.parametrize("ttl", ["30s", "2 h", "h", "1.5h", "2H", "1w", ""])
def test_ttl_in_another_format_is_rejected(ttl: str) -> None:
    with pytest.raises(ValidationError, match="ttl"):
        DeploymentRequested(id="iris", executable_id="sklearn", ttl=ttl)


def test_deployment_status_carries_sap_statuses() -> None:
    status = DeploymentStatus(id="iris", status=Status.RUNNING, running_replicas=0, min_replicas=0)
    event = new_event(status, source="/test")
    assert event.data["status"] == "RUNNING"
    assert event.data["runningReplicas"] == 0
    assert [s.value for s in Status] == ["UNKNOWN", "PENDING", "RUNNING", "STOPPING", "STOPPED", "DEAD"]
    event.data["status"] = "SLEEPING"
    with pytest.raises(MalformedEvent, match=r"data\.status"):
        parse_data(event)


def test_artifact_labels_round_trip() -> None:
    artifact = ArtifactCreated(name="iris", url="s3://b/iris", labels=[Label(key="team", value="ml")])
    received = parse_data(new_event(artifact, source="/test"))
    assert isinstance(received, ArtifactCreated)
    assert received.labels == [Label(key="team", value="ml")]


def test_subject_is_the_type_without_its_prefix_under_the_group() -> None:
    assert subject_for("io.zeroserve.artifact.created", "team-a") == "zeroserve.team-a.artifact.created"
    assert subject_for("io.zeroserve.deployment.log", "default") == "zeroserve.default.deployment.log"


def test_group_of_reads_the_group_back_from_every_subject() -> None:
    for event_type in EVENT_TYPES:
        assert group_of(subject_for(event_type, "team-a")) == "team-a"
    assert group_of(deadletter_subject("team-a", "deploy")) == "team-a"


@pytest.mark.parametrize("group", ["Team", "team.a", ">", "team a", ""])
def test_group_that_cannot_be_a_subject_token_is_rejected(group: str) -> None:
    with pytest.raises(MalformedEvent, match="invalid resource group"):
        subject_for("io.zeroserve.artifact.created", group)
    with pytest.raises(MalformedEvent, match="invalid resource group"):
        deadletter_subject(group, "deploy")


def test_the_wildcard_group_makes_a_pattern_for_every_group_but_is_no_group_of_its_own() -> None:
    assert subject_for("io.zeroserve.artifact.created", "*") == "zeroserve.*.artifact.created"
    assert deadletter_subject("*", "*") == "zeroserve.*.deadletter.*"
    with pytest.raises(MalformedEvent, match="invalid resource group"):
        group_of("zeroserve.*.artifact.created")


@pytest.mark.parametrize("subject", ["other.team-a.artifact.created", "zeroserve.team-a", "zeroserve"])
def test_group_of_rejects_a_subject_that_is_not_zeroserve(subject: str) -> None:
    with pytest.raises(MalformedEvent, match="not a zeroserve subject"):
        group_of(subject)


def test_subject_for_rejects_a_foreign_event_type() -> None:
    with pytest.raises(MalformedEvent, match="not a zeroserve event type"):
        subject_for("com.example.artifact.created", "team-a")


def test_deadletter_subject_names_group_and_function() -> None:
    assert (
        deadletter_subject("team-a", "register_artifact") == "zeroserve.team-a.deadletter.register_artifact"
    )
    with pytest.raises(MalformedEvent, match="invalid function name"):
        deadletter_subject("team-a", "deploy.v2")


@pytest.mark.parametrize("ttl", ["99999999999d", "9" * 5000 + "m", "1000000m"])
def test_a_ttl_of_more_than_six_digits_is_refused_as_the_api_refuses_it(ttl: str) -> None:
    # Six digits as the API's ttl: the longest (999999d) still ends before the year 9999.
    with pytest.raises(ValidationError, match="pattern"):
        DeploymentRequested(id="iris", executable_id="sklearn", ttl=ttl)
    assert DeploymentRequested(id="iris", executable_id="sklearn", ttl="999999d").ttl == "999999d"

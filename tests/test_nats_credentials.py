"""NATS lets in only zeroserve, and on a cluster each role only to its own subjects.

One machine: `zeroserve up`'s nats-server refuses a connection without the credentials it made at its
first start, keeps them in a file only its user may read (and refuses one that others may have read),
shows them on no command line, and uses the same ones again after a restart, with its data.

A cluster: a real nats-server runs with the very configuration the manifests ship
(manifests/base/nats.conf, written from zeroserve/core/nats_permissions.py) and the passwords of the
Secret in its environment. The three roles run as three processes with their own users against it and
kmock's Kubernetes emulator, and take a deployment through its life without one permission violation,
while each role is refused what belongs to another one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from conftest import until
from kube import Cluster, Controller, condition
from models import train_iris_sklearn
from nats.errors import Error as NatsError
from pydantic import SecretStr

from zeroserve.core.bus import Bus
from zeroserve.core.nats_auth import EmbeddedCredentials
from zeroserve.core.nats_permissions import PERMISSIONS
from zeroserve.core.nats_server import nats_server_binary
from zeroserve.errors import ZeroserveError
from zeroserve.node import Node
from zeroserve.settings import Settings
from zeroserve.webhooks.replays import SEEN_BUCKET

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_CONFIG = ROOT / "manifests" / "base" / "nats.conf"
GROUP = {"AI-Resource-Group": "default"}


def without_credentials(url: str) -> str:
    return "nats://" + url.rpartition("@")[2]


async def refused(url: str, **options: Any) -> str:
    """What the server said when it refused this connection (the test fails if it let it in)."""
    with pytest.raises(NatsError) as refusal:
        nc = await nats.connect(url, allow_reconnect=False, connect_timeout=2, max_reconnect_attempts=0, **options)
        await nc.close()
    return str(refusal.value)


# --- one machine --------------------------------------------------------------------------------------


async def test_zeroserve_up_lets_nobody_into_its_nats_without_the_credentials_it_keeps_private(
    settings: Settings,
) -> None:
    # A user and password meant for an external NATS do not stand in for the embedded server's own.
    settings = settings.model_copy(update={"fork_server": False, "nats_user": "gateway",
                                           "nats_password": SecretStr("for-another-nats")})
    credentials_file = settings.nats_dir / EmbeddedCredentials.FILE
    async with Node(settings) as zeroserve:
        assert zeroserve.nats_url is not None and zeroserve.nats is not None
        assert "Authorization Violation" in await refused(without_credentials(zeroserve.nats_url))
        assert "Authorization Violation" in await refused(
            without_credentials(zeroserve.nats_url), user="zeroserve", password="guessed")
        # The credentials: a file only this user may read, with a password no one guesses.
        for private in (credentials_file, settings.nats_dir / "nats.conf", settings.data_dir / "nats.url"):
            assert private.stat().st_mode & 0o777 == 0o600, private
        assert settings.nats_dir.stat().st_mode & 0o777 == 0o700
        kept = json.loads(credentials_file.read_text())
        assert len(kept["password"]) >= 40
        # Never on a command line, which `ps` shows to every user of the machine.
        pid = zeroserve.nats._process.pid  # type: ignore[union-attr]
        assert kept["password"] not in await asyncio.to_thread(Path(f"/proc/{pid}/cmdline").read_text)
        # What zeroserve and its tools connect with (data_dir/nats.url) is let in, and sees zeroserve's streams.
        nc = await nats.connect((settings.data_dir / "nats.url").read_text(), allow_reconnect=False)
        events = (await nc.jetstream().stream_info("ZEROSERVE_EVENTS")).state.messages
        await nc.close()
        assert zeroserve.platform is not None
        client, _ = await zeroserve.platform.auth.create_client(["default"], name="kept across restarts")

    # The next start uses the same credentials, and JetStream kept its data.
    async with Node(settings) as again:
        assert json.loads(credentials_file.read_text()) == kept
        assert again.nats_url is not None and kept["password"] in again.nats_url
        assert again.platform is not None
        assert await again.platform.store.clients.get("global", client.id) is not None
        assert (await again.platform.bus.js.stream_info("ZEROSERVE_EVENTS")).state.messages >= events


def test_credentials_that_others_may_have_read_are_refused_with_what_to_do(tmp_path: Path) -> None:
    nats_dir = tmp_path / "nats"
    made = EmbeddedCredentials.load_or_create(nats_dir)
    path = nats_dir / EmbeddedCredentials.FILE
    assert EmbeddedCredentials.load_or_create(nats_dir) == made  # kept, not made again
    path.chmod(0o644)
    with pytest.raises(ZeroserveError) as refusal:
        EmbeddedCredentials.load_or_create(nats_dir)
    assert refusal.value.reason == "NatsCredentialsExposed"
    assert "readable by others (mode 0644)" in refusal.value.message
    assert f"chmod 600 {path}" in refusal.value.message
    assert made.password not in refusal.value.message
    path.chmod(0o600)
    assert EmbeddedCredentials.load_or_create(nats_dir) == made


def test_zeroserve_up_with_credentials_others_may_have_read_says_so_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from zeroserve.cli import app

    made = EmbeddedCredentials.load_or_create(tmp_path / "nats")
    (tmp_path / "nats" / EmbeddedCredentials.FILE).chmod(0o640)
    result = CliRunner().invoke(app, ["up"], env={"ZEROSERVE_DATA_DIR": str(tmp_path), "ZEROSERVE_GATEWAY_PORT": "0"})
    assert result.exit_code == 1
    assert "zeroserve up failed" in result.output and "readable by others (mode 0640)" in result.output
    assert "Traceback" not in result.output and made.password not in result.output


# --- a cluster: the permissions the manifests ship --------------------------------------------------------


PASSWORDS = {role: secrets.token_hex(16) for role in PERMISSIONS}


class ShippedNats:
    """nats-server with manifests/base/nats.conf, as the StatefulSet runs it (the Secret in its environment)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.log = directory / "nats-server.log"
        self.address = ""

    @property
    def streams(self) -> set[str]:
        return {path.name for path in (self.directory / "jetstream" / "$G" / "streams").iterdir()}

    def violations(self, since: int = 0) -> list[str]:
        """What the server refused, from byte ``since`` of its log on (other tests here are refused on purpose)."""
        return [line for line in self.log.read_bytes()[since:].decode().splitlines() if "Violation" in line]

    def url(self, role: str | None = None, password: str | None = None) -> str:
        if role is None:
            return f"nats://{self.address}"
        return f"nats://{role}:{password or PASSWORDS[role]}@{self.address}"


@pytest.fixture(scope="module")
def shipped_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShippedNats]:
    server = ShippedNats(tmp_path_factory.mktemp("shipped-nats"))
    ports = server.directory / "ports"
    ports.mkdir()
    environment = {f"NATS_{role.upper()}_PASSWORD": password for role, password in PASSWORDS.items()}
    with server.log.open("wb") as output:
        process = subprocess.Popen(
            [nats_server_binary(), "-c", str(SHIPPED_CONFIG), "-a", "127.0.0.1", "-p", "-1", "-js",
             "-sd", str(server.directory), "--ports_file_dir", str(ports)], stdout=output, stderr=output,
            env=environment)
    try:
        deadline = time.monotonic() + 10
        while not server.address:
            assert time.monotonic() < deadline and process.poll() is None, server.log.read_text()
            for written in ports.glob("*.ports"):
                with contextlib.suppress(ValueError, KeyError, IndexError):
                    server.address = json.loads(written.read_text())["nats"][0].split("://", 1)[1]
            time.sleep(0.02)
        yield server
    finally:
        process.terminate()
        process.wait()


class Connection:
    """A role's own connection, which keeps what the server refused it (nats-py's error callback)."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc: Any = None

    async def open(self, url: str, inbox: str) -> Connection:
        async def error(problem: Exception) -> None:
            self.errors.append(str(problem))

        self.nc = await nats.connect(url, allow_reconnect=False, error_cb=error, inbox_prefix=inbox)
        return self

    async def refusal(self) -> str:
        await until(lambda: self.errors, timeout=5, what="the server's refusal")
        return self.errors.pop(0)


@contextlib.asynccontextmanager
async def as_role(server: ShippedNats, role: str) -> AsyncIterator[Connection]:
    connection = await Connection().open(server.url(role), PERMISSIONS[role].inbox_prefix)
    try:
        yield connection
    finally:
        await connection.nc.close()


async def test_the_shipped_nats_refuses_a_connection_without_a_role_s_password(shipped_nats: ShippedNats) -> None:
    assert "Authorization Violation" in await refused(shipped_nats.url())
    assert "Authorization Violation" in await refused(shipped_nats.url("gateway", password="guessed"))
    # One role's password is not another's.
    assert "Authorization Violation" in await refused(shipped_nats.url("gateway", password=PASSWORDS["watcher"]))


async def test_a_role_whose_password_nats_refuses_does_not_start_and_says_so(
    shipped_nats: ShippedNats, settings: Settings,
) -> None:
    wrong = "wrong-" + secrets.token_hex(8)
    settings = settings.model_copy(update=dict(nats_url=shipped_nats.url(), nats_user="gateway",
                                               nats_password=SecretStr(wrong)))
    with pytest.raises(ZeroserveError) as refusal:
        await asyncio.wait_for(Bus.connect(shipped_nats.url(), settings), 10)
    assert refusal.value.reason == "NatsRefused" and "authorization violation" in refusal.value.message.lower()
    assert wrong not in refusal.value.message


def test_a_nats_password_without_its_user_is_a_bad_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZEROSERVE_NATS_PASSWORD", "a-password")
    with pytest.raises(ValueError, match="set ZEROSERVE_NATS_USER too"):
        Settings()


@pytest.mark.parametrize(("role", "subject", "what"), [
    # Announcing what the functions found out about an artifact, or making a dead letter.
    ("gateway", "zeroserve.default.artifact.status", "an artifact's status"),
    ("gateway", "zeroserve.default.deadletter.deployment_requested", "a dead letter"),
    # Asking for deployments: only users, through the gateway (its tokens and groups), may.
    ("functions", "zeroserve.default.deployment.requested", "a deployment request"),
    ("watcher", "zeroserve.team-b.artifact.created", "another group's artifact"),
    # Adding an API client (with every group) is the gateway's alone.
    ("functions", "$KV.zeroserve_clients.global.intruder", "an API client"),
    ("watcher", "$KV.zeroserve_clients.global.intruder", "an API client"),
    # Removing a stream is nobody's.
    ("gateway", "$JS.API.STREAM.DELETE.ZEROSERVE_EVENTS", "the events stream's deletion"),
])
async def test_a_role_is_refused_a_subject_it_does_not_own(
    shipped_nats: ShippedNats, role: str, subject: str, what: str,
) -> None:
    async with as_role(shipped_nats, role) as connection:
        await connection.nc.publish(subject, b"{}")
        await connection.nc.flush()
        # (nats-py reports the server's words in lower case)
        assert f'permissions violation for publish to "{subject.lower()}"' in await connection.refusal(), what


async def test_a_role_cannot_read_another_role_s_replies_or_publish_through_jetstream_what_it_does_not_own(
    shipped_nats: ShippedNats,
) -> None:
    async with as_role(shipped_nats, "gateway") as gateway:
        await gateway.nc.subscribe("_INBOX_functions.>")
        await gateway.nc.flush()
        assert 'permissions violation for subscription to "_inbox_functions.>"' in await gateway.refusal()
    async with as_role(shipped_nats, "gateway") as gateway:
        # A JetStream publish the role may not make: no ack, and the server says why.
        with pytest.raises(asyncio.TimeoutError):
            await gateway.nc.jetstream().publish("zeroserve.default.artifact.status", b"{}", timeout=1)
        assert "permissions violation" in await gateway.refusal()


@pytest.mark.slow
async def test_three_roles_with_their_own_users_take_a_deployment_through_its_life_without_a_violation(
    settings: Settings, cluster: Cluster, tmp_path: Path, shipped_nats: ShippedNats,
) -> None:
    model = train_iris_sklearn(tmp_path / "sources" / "iris")
    log_start = shipped_nats.log.stat().st_size

    signing_key = SecretStr(secrets.token_hex(32))  # as the manifests' Secret gives every gateway

    def role_settings(role: str) -> Settings:
        # As the manifests give each Deployment: the shared config, and its own user, password and inbox.
        return settings.model_copy(update=dict(
            data_dir=tmp_path / role, backend="kserve", kubeconfig=cluster.kubeconfig(tmp_path / f"{role}.kubeconfig"),
            nats_url=shipped_nats.url(), nats_user=role, nats_password=SecretStr(PASSWORDS[role]),
            nats_inbox_prefix=PERMISSIONS[role].inbox_prefix, public_url="https://zeroserve.example.com",
            file_roots=[tmp_path / "sources"], lease_namespace="zeroserve", pod_name=f"{role}-0",
            kserve_log_poll_s=0.2, gateway_port=0, gateway_host="127.0.0.1", token_signing_key=signing_key))

    controller = Controller(cluster)
    async with (Node(role_settings("watcher"), ["watcher"]), Node(role_settings("functions"), ["functions"]),
                Node(role_settings("gateway"), ["gateway"]) as gateway, httpx.AsyncClient(timeout=30) as http):
        # The gateway listens on a free port of loopback; its public URL is the cluster's.
        api = f"http://127.0.0.1:{gateway.settings.gateway_port}"
        assert gateway.platform is not None
        client, secret = await gateway.platform.auth.create_client(["*"])
        login = await http.post(f"{api}/oauth/token", data={"grant_type": "client_credentials"},
                                auth=(client.id, secret))
        http.headers["Authorization"] = f"Bearer {login.json()['access_token']}"

        async def status() -> str:
            answer = await http.get(f"{api}/v2/lm/deployments/iris", headers=GROUP)
            return str(answer.json().get("status")) if answer.status_code == 200 else str(answer.status_code)

        async def status_is(expected: str) -> bool:
            return await status() == expected

        for event in ({"type": "io.zeroserve.artifact.created", "id": "a-1",
                       "data": {"id": "iris-model", "name": "iris", "url": model.as_uri()}},
                      {"type": "io.zeroserve.deployment.requested", "id": "d-1",
                       "data": {"id": "iris", "executableId": "sklearn", "inputArtifacts": {"model": "iris-model"},
                                "parameters": {"resourcePlan": "starter"}}}):
            sent = await http.post(f"{api}/v2/events", json={"specversion": "1.0", "source": "/tests", **event},
                                   headers={**GROUP, "Content-Type": "application/cloudevents+json"})
            assert sent.status_code == 202, sent.text
        await until(lambda: cluster.isvc("default", "iris"), what="the InferenceService the functions apply")
        controller.pod("default", "iris", "iris-predictor-00001-deployment-1")
        controller.ready("default", "iris", url="http://127.0.0.1:9")
        await until(lambda: status_is("RUNNING"), what="RUNNING, announced by the watcher")
        logs = await http.get(f"{api}/v2/lm/deployments/iris/logs", headers=GROUP)
        assert logs.status_code == 200, logs.text

        stopping = await http.patch(f"{api}/v2/lm/deployments/iris", json={"targetStatus": "STOPPED"}, headers=GROUP)
        assert stopping.status_code == 202, stopping.text
        await until(lambda: (cluster.isvc("default", "iris") or {})["metadata"]["annotations"].get(
            "serving.kserve.io/stop") == "true", what="the stop the functions apply")
        controller.delete_pod("default", "iris-predictor-00001-deployment-1")
        controller.status("default", "iris", {"conditions": [condition("Stopped", "True"),
                                                             condition("Ready", "False", "Stopped")]})
        await until(lambda: status_is("STOPPED"), what="STOPPED")
        assert (await http.delete(f"{api}/v2/lm/deployments/iris", headers=GROUP)).status_code == 202
        await until(lambda: status_is("404"), what="the deployment's deletion")

    assert shipped_nats.violations(since=log_start) == [], (
        "a role was refused what its work needs: zeroserve/core/nats_permissions.py")
    # Every stream and bucket zeroserve made is one the roles' permissions name.
    named = {subject.split(".")[4] for p in PERMISSIONS.values() for subject in p.publish
             if subject.startswith("$JS.API.STREAM.CREATE.")}
    assert shipped_nats.streams <= named
    # The one bucket made later, by the first signed webhook in, is the gateway's.
    assert f"KV_{SEEN_BUCKET}" in {subject.split(".")[4] for subject in PERMISSIONS["gateway"].publish
                                   if subject.startswith("$JS.API.STREAM.CREATE.")}

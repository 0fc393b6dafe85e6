"""Secrets and tokens never show: not in the process's logs, not on the bus, not in an answer.

Every path that handles a secret is walked, the happy one and the failing ones: OAuth client
secrets and the bearer tokens they buy (a wrong secret, a wrong, forged or expired token), the
token signing key, object store secrets (created, refused, changed, used to fetch a model from an
S3 API on loopback, used against an endpoint that is not there), webhook secrets both ways (a
subscription's signing secret and a receiver's token in its URL; an inbound source's secret with a
good and a bad signature, and one that cannot be used), and a NATS URL with a user and password.
Meanwhile everything is kept: every Python log record of the process (every logger at DEBUG),
every message on ``zeroserve.>`` and every message stored in the events, logs and dead-letter
streams, every answer of the gateway but the few that show a secret to its owner by design, and
the deployment logs API. Then each secret (and its base64 where it travels so) is looked for in all
of it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from conftest import free_port, until
from models import IRIS_ROWS, train_iris_sklearn
from pydantic import SecretStr

from zeroserve.core.bus import EVENTS_STREAM, LOGS_STREAM
from zeroserve.core.dead_letters import DEADLETTER_STREAM
from zeroserve.core.nats_server import nats_server_binary
from zeroserve.errors import ZeroserveError
from zeroserve.node import Node
from zeroserve.settings import Settings, WebhookSource
from zeroserve.webhooks.signatures import new_secret, sign

NATS_USER = "zeroserve-bus"
NATS_PASSWORD = "nats-pass-" + secrets.token_hex(12)
SIGNING_KEY = "token-signing-key-" + secrets.token_hex(16)
ACCESS_KEY = "AKIA" + secrets.token_hex(8).upper()
SECRET_KEY = "s3-secret-" + secrets.token_hex(16)
INBOUND_SECRET = new_secret()
BROKEN_SECRET = "whsec_" + "not!base64*" + secrets.token_hex(8)
RECEIVER_TOKEN = "receiver-token-" + secrets.token_hex(12)
RECEIVER_PASSWORD = "receiver-pass-" + secrets.token_hex(12)
DEFAULT = {"AI-Resource-Group": "default"}
# Standard logging attributes: anything else on a record is an `extra` and is searched too.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Capture(logging.Handler):
    """Every record, formatted with its traceback and its extras."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        self.records.append(self.format(record) + (f" {extras!r}" if extras else ""))


@contextlib.contextmanager
def every_logger_at_debug(capture: Capture) -> Iterator[Callable[[], None]]:
    """Root and every logger at DEBUG, and the capture on those that write somewhere but do not pass
    records up (a logger without handlers that passes nothing up writes nowhere: uvicorn's access log,
    which zeroserve turns off, is one).

    Yields a function to call again once new loggers exist (uvicorn configures its own at start).
    """
    saved: dict[logging.Logger, tuple[int, bool]] = {}

    def widen() -> None:
        loggers = [logging.getLogger()] + [logger for logger in logging.Logger.manager.loggerDict.values()
                                           if isinstance(logger, logging.Logger)]
        for logger in loggers:
            saved.setdefault(logger, (logger.level, capture in logger.handlers))
            logger.setLevel(logging.DEBUG)
            writes = logger is loggers[0] or (not logger.propagate and logger.handlers)
            if writes and capture not in logger.handlers:
                logger.addHandler(capture)

    widen()
    try:
        yield widen
    finally:
        for logger, (level, had) in saved.items():
            logger.setLevel(level)
            if not had:
                logger.removeHandler(capture)


@dataclass
class Seen:
    """All that a secret must not be found in, by where it was seen."""

    logs: list[str] = field(default_factory=list)
    bus: list[str] = field(default_factory=list)
    stored: list[str] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)
    deployment_logs: list[str] = field(default_factory=list)

    def hits(self, values: dict[str, str]) -> list[tuple[str, str, str]]:
        found = []
        for where, texts in vars(self).items():
            for text in texts:
                for name, value in values.items():
                    if value in text:
                        found.append((name, where, text[:300]))
        return found


# -- a NATS that wants a user and password -------------------------------------------------------------


@pytest.fixture
async def guarded_nats(tmp_path: Path) -> AsyncIterator[str]:
    """A nats-server with JetStream that lets in NATS_USER with NATS_PASSWORD; yields its host:port."""
    directory = tmp_path / "guarded-nats"
    ports = directory / "ports"
    ports.mkdir(parents=True)
    with (directory / "server.log").open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            nats_server_binary(), "-a", "127.0.0.1", "-p", "-1", "-js", "-sd", str(directory),
            "--user", NATS_USER, "--pass", NATS_PASSWORD, "--ports_file_dir", str(ports),
            stdout=output, stderr=output)
    try:
        address = ""
        deadline = time.monotonic() + 10
        while not address:
            assert time.monotonic() < deadline and process.returncode is None, "the nats-server did not start"
            for written in ports.glob("*.ports"):
                with contextlib.suppress(ValueError, KeyError, IndexError):
                    address = json.loads(written.read_text())["nats"][0].split("://", 1)[1]
            await asyncio.sleep(0.02)
        yield address
    finally:
        process.terminate()
        await process.wait()


# -- a receiver of webhooks --------------------------------------------------------------------------


class Receiver:
    """Answers 200 on /hook and 503 elsewhere; keeps every request."""

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[tuple[str, dict[str, str]]] = []

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        self.requests.append((scope["path"], {k.decode(): v.decode() for k, v in scope["headers"]}))
        await send({"type": "http.response.start", "status": 200 if scope["path"] == "/hook" else 503,
                    "headers": []})
        await send({"type": "http.response.body", "body": b""})


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    # Its access log is the receiver's, not zeroserve's: the URL's token is the receiver's to see.
    server = _Server(uvicorn.Config(receiver, host="127.0.0.1", port=0, log_level="warning", lifespan="off",
                                    access_log=False))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the receiver did not start"
        await asyncio.sleep(0.01)
    receiver.url = f"127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    yield receiver
    server.should_exit = True
    await task


# -- an S3 API on loopback ------------------------------------------------------------------------


@pytest.fixture
def s3_api(tmp_path: Path) -> Iterator[str]:
    """moto's S3 on loopback, with a trained iris model under ml-models/team/iris; yields host:port."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
                          aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    client.create_bucket(Bucket="ml-models")
    model = train_iris_sklearn(tmp_path / "iris")
    client.put_object(Bucket="ml-models", Key="team/iris/model.joblib", Body=(model / "model.joblib").read_bytes())
    yield f"{host}:{port}"
    server.stop()


def s3_secret(name: str, endpoint: str, **changes: Any) -> dict[str, Any]:
    return {"name": name, "type": "S3", "bucket": "ml-models", "endpoint": endpoint, "region": "us-east-1",
            "pathPrefix": "team", "usehttps": "0", "verifyssl": "0",
            "data": {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}, **changes}


@pytest.fixture
def settings(settings: Settings, guarded_nats: str) -> Settings:
    return settings.model_copy(update={
        "nats_url": f"nats://{NATS_USER}:{NATS_PASSWORD}@{guarded_nats}",
        "token_signing_key": SecretStr(SIGNING_KEY),
        "webhooks": {
            "ci": WebhookSource(kind="generic", secret=SecretStr(INBOUND_SECRET), group="default",
                                event_type="io.zeroserve.deployment.stopped"),
            "broken": WebhookSource(kind="generic", secret=SecretStr(BROKEN_SECRET), group="default",
                                    event_type="io.zeroserve.deployment.stopped"),
        },
        "webhook_allowed_networks": [ipaddress.ip_network("127.0.0.0/8")],
        "webhook_delivery_attempts": 2, "webhook_delivery_backoff_s": [0.05],
        "fork_server": False,
    })


async def stored_messages(embedded: Node) -> list[str]:
    """Every message the events, logs and dead-letter streams hold: subject, headers and body."""
    assert embedded.platform is not None
    js = embedded.platform.bus.js
    texts = []
    for stream in (EVENTS_STREAM, LOGS_STREAM, DEADLETTER_STREAM):
        state = (await js.stream_info(stream)).state
        messages = [await js.get_msg(stream, sequence) for sequence in range(state.first_seq, state.last_seq + 1)]
        assert len(messages) == state.messages, stream  # nothing was removed meanwhile: every one is read
        texts += [f"{m.subject} {m.headers!r} {(m.data or b'').decode(errors='replace')}" for m in messages]
    return texts


def signed(secret: str, body: bytes, webhook_id: str) -> dict[str, str]:
    timestamp = int(time.time())
    return {"webhook-id": webhook_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, webhook_id, timestamp, body), "Content-Type": "application/json"}


async def test_no_secret_reaches_a_log_an_event_an_answer_or_the_deployment_logs(
        settings, guarded_nats, s3_api, receiver, listen, capsys):
    capture = Capture()
    seen = Seen()
    shown_by_design: list[str] = []

    async def keep(response: httpx.Response) -> None:
        await response.aread()
        request = response.request
        path = request.url.path
        # The few answers that show a secret to the one who asked for it: a token, a new subscription's
        # signing secret, and a subscription's URL (the receiver's token in it is the subscriber's own).
        if (path == "/oauth/token" and response.status_code == 200) or (
                path.startswith("/v2/subscriptions") and response.is_success):
            shown_by_design.append(path)
            return
        seen.bodies.append(f"{request.method} {path} {response.status_code} {dict(response.headers)!r} "
                           f"{response.text}")

    with every_logger_at_debug(capture) as widen:
        async with Node(settings) as zeroserve:
            widen()  # uvicorn's loggers exist now
            assert zeroserve.platform is not None
            everything = await listen(zeroserve, "zeroserve.>")
            base = zeroserve.url

            def client(token: str | None = None, **options: Any) -> httpx.AsyncClient:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                return httpx.AsyncClient(base_url=base, timeout=60, headers=headers,
                                         event_hooks={"response": [keep]}, **options)

            # OAuth: a client, its secret, the tokens it gets, and every way of getting one wrong.
            operator_client, operator_secret = await zeroserve.platform.auth.create_client(["*"])
            async with client() as anonymous:
                got = await anonymous.post("/oauth/token", data={"grant_type": "client_credentials"},
                                           auth=(operator_client.id, operator_secret))
                token = got.json()["access_token"]
                got_by_form = await anonymous.post("/oauth/token", data={
                    "grant_type": "client_credentials", "client_id": operator_client.id,
                    "client_secret": operator_secret})
                second_token = got_by_form.json()["access_token"]
                wrong_secret = "wrong-client-secret-" + secrets.token_hex(8)
                assert (await anonymous.post("/oauth/token", data={"grant_type": "client_credentials"},
                                             auth=(operator_client.id, wrong_secret))).status_code == 401
                assert (await anonymous.post("/oauth/token", data={
                    "grant_type": "client_credentials", "client_id": operator_client.id,
                    "client_secret": wrong_secret})).status_code == 401
                assert (await anonymous.post("/oauth/token", data={
                    "grant_type": "password", "client_id": operator_client.id,
                    "client_secret": operator_secret})).status_code == 400
                assert (await anonymous.post("/oauth/token", data={
                    "client_id": operator_client.id, "client_secret": operator_secret})).status_code == 400
                assert (await anonymous.post("/oauth/token", content=json.dumps({
                    "grant_type": "client_credentials", "client_secret": operator_secret}),
                    headers={"Content-Type": "application/json"})).status_code == 400
                broken_basic = b64(f"{operator_client.id}:{operator_secret}")[:-1] + "!"
                assert (await anonymous.post("/oauth/token", data={"grant_type": "client_credentials"},
                                             headers={"Authorization": f"Basic {broken_basic}"})).status_code == 401

            now = int(time.time())
            claims = {"iss": "zeroserve", "sub": operator_client.id, "groups": ["*"], "iat": now - 100}
            expired = jwt.encode({**claims, "exp": now - 10}, SIGNING_KEY.encode(), algorithm="HS256")
            forged = jwt.encode({**claims, "exp": now + 600}, "another-key-" + "x" * 32, algorithm="HS256")
            garbage = "not-a-token-" + secrets.token_hex(10)
            for bad in (expired, forged, garbage, token[:-4] + "AAAA"):
                async with client(bad) as caller:
                    for method, path in (("GET", "/v2/lm/deployments"), ("POST", "/v2/events"),
                                         ("GET", "/v2/lm/deployments/dxyz1234/events"), ("GET", "/metrics"),
                                         ("POST", "/v2/inference/deployments/dxyz1234/v1/models/m:predict"),
                                         ("GET", "/v2/admin/objectStoreSecrets")):
                        response = await caller.request(method, path, headers=DEFAULT)
                        assert response.status_code == 401, (method, path, response.text)

            async with client(token) as api, client(second_token) as api2:
                # Webhooks out, first, so that every announcement below is delivered (or fails to be).
                hook = await api.post("/v2/subscriptions", json={
                    "url": f"http://{receiver.url}/hook?token={RECEIVER_TOKEN}",
                    "eventTypes": ["deployment.status", "deployment.log", "artifact.status"]})
                failing = await api.post("/v2/subscriptions", json={
                    "url": f"http://hooks:{RECEIVER_PASSWORD}@{receiver.url}/down?token={RECEIVER_TOKEN}",
                    "eventTypes": ["deployment.status", "artifact.status"]})
                assert hook.status_code == failing.status_code == 201, (hook.text, failing.text)
                subscription_secrets = [hook.json()["secret"], failing.json()["secret"]]
                for url in (f"ftp://hooks:{RECEIVER_PASSWORD}@{receiver.url}/x?token={RECEIVER_TOKEN}",
                            f"http://10.1.2.3/hook?token={RECEIVER_TOKEN}",
                            f"http://hooks:{RECEIVER_PASSWORD}@169.254.169.254/x",
                            f"http://{receiver.url}:99999/hook?token={RECEIVER_TOKEN}"):
                    refused = await api.post("/v2/subscriptions", json={"url": url, "eventTypes": ["deployment.log"]})
                    assert refused.status_code == 400, refused.text

                # Object store secrets: kept, refused, changed, listed.
                assert (await api.post("/v2/admin/objectStoreSecrets", headers=DEFAULT,
                                       json=s3_secret("models", s3_api))).status_code == 202
                assert (await api.post("/v2/admin/objectStoreSecrets", headers=DEFAULT,
                                       json=s3_secret("nowhere", f"127.0.0.1:{free_port()}",
                                                      bucket="elsewhere"))).status_code == 202
                for bad in (s3_secret("models", s3_api),  # exists: 409
                            s3_secret("Not_A_Name", s3_api), s3_secret("gcs-store", s3_api, type="GCS"),
                            s3_secret("no-bucket", s3_api, bucket=""),
                            s3_secret("half", s3_api, data={"AWS_SECRET_ACCESS_KEY": SECRET_KEY}),
                            s3_secret("typed", s3_api, data={"AWS_ACCESS_KEY_ID": ACCESS_KEY,
                                                             "AWS_SECRET_ACCESS_KEY": [SECRET_KEY]}),
                            s3_secret("extra", s3_api, unknown=SECRET_KEY),
                            {"name": "x-store", "data": {"AWS_SECRET_ACCESS_KEY": SECRET_KEY}},
                            {"name": "local", "type": "local", "pathPrefix": "relative/dir",
                             "data": {"AWS_SECRET_ACCESS_KEY": SECRET_KEY}}):
                    response = await api.post("/v2/admin/objectStoreSecrets", headers=DEFAULT, json=bad)
                    assert response.status_code in (400, 409), response.text
                assert (await api.patch("/v2/admin/objectStoreSecrets/models", headers=DEFAULT,
                                        json=s3_secret("models", s3_api))).status_code == 202
                assert (await api.patch("/v2/admin/objectStoreSecrets/models", headers=DEFAULT,
                                        json=s3_secret("renamed", s3_api))).status_code == 400
                assert (await api.get("/v2/admin/objectStoreSecrets", headers=DEFAULT)).status_code == 200
                assert (await api.get("/v2/admin/objectStoreSecrets/models", headers=DEFAULT)).status_code == 200

                # ...used: a model fetched with the keys, an endpoint that is not there, a secret that is not.
                async def artifact(url: str) -> httpx.Response:
                    return await api.post("/v2/lm/artifacts", headers=DEFAULT, json={
                        "name": "iris", "kind": "model", "url": url, "scenarioId": "model-serving"})

                good, gone = (await artifact("ai://models/iris")).json()["id"], \
                    (await artifact("ai://nowhere/iris")).json()["id"]
                empty = (await artifact("ai://models/nothing-here")).json()["id"]
                assert (await artifact("ai://no-such-secret/iris")).status_code == 400

                def artifact_settled(id: str) -> bool:
                    return any(e.get("id") == id and e.get("status") in ("staged", "rejected")
                               for e in everything.json())

                for id in (good, gone, empty):
                    await until(lambda id=id: artifact_settled(id), what=f"artifact {id} staged or rejected")
                    assert (await api.get(f"/v2/lm/artifacts/{id}", headers=DEFAULT)).status_code == 200
                statuses = {e["id"]: e["status"] for e in everything.json()
                            if e.get("id") in (good, gone, empty) and e.get("status") in ("staged", "rejected")}
                assert statuses == {good: "staged", gone: "rejected", empty: "rejected"}, statuses

                deployments = {}
                for name, artifact_id in (("fetched", good), ("unreachable", gone)):
                    configuration = await api.post("/v2/lm/configurations", headers=DEFAULT, json={
                        "name": name, "executableId": "sklearn", "scenarioId": "model-serving",
                        "parameterBindings": [{"key": "minReplicas", "value": "0"}],
                        "inputArtifactBindings": [{"key": "model", "artifactId": artifact_id}]})
                    assert configuration.status_code == 201, configuration.text
                    created = await api.post("/v2/lm/deployments", headers=DEFAULT,
                                             json={"configurationId": configuration.json()["id"]})
                    deployments[name] = created.json()["id"]

                async def status(id: str, wanted: str) -> bool:
                    return (await api.get(f"/v2/lm/deployments/{id}", headers=DEFAULT)).json()["status"] == wanted

                await until(lambda: status(deployments["fetched"], "RUNNING"), what="the S3 model serving")
                await until(lambda: status(deployments["unreachable"], "DEAD"), what="the unreachable one dead")
                # A request with the bearer token: the replica starts, answers, and writes its own log lines.
                predicted = await api2.post(f"/v2/inference/deployments/{deployments['fetched']}/v1/models/"
                                            f"{deployments['fetched']}:predict", json={"instances": IRIS_ROWS},
                                            headers=DEFAULT)
                assert predicted.status_code == 200, predicted.text

                # Webhooks in: a good signature, a wrong one, a replay, and a source whose secret is unusable.
                body = json.dumps({"id": "dnothere1234"}).encode()
                ok = signed(INBOUND_SECRET, body, "msg_" + secrets.token_hex(8))
                assert (await api.post("/v2/webhooks/ci", content=body, headers=ok)).status_code == 202
                assert (await api.post("/v2/webhooks/ci", content=body, headers=ok)).status_code == 401
                wrong = signed(new_secret(), body, "msg_" + secrets.token_hex(8))
                assert (await api.post("/v2/webhooks/ci", content=body, headers=wrong)).status_code == 401
                stale = {**signed(INBOUND_SECRET, body, "msg_x"), "webhook-timestamp": str(int(time.time()) - 9999)}
                assert (await api.post("/v2/webhooks/ci", content=body, headers=stale)).status_code == 401
                broken = {"webhook-id": "msg_y", "webhook-timestamp": str(int(time.time())),
                          "webhook-signature": "v1," + b64(BROKEN_SECRET)}
                assert (await api.post("/v2/webhooks/broken", content=body, headers=broken)).status_code == 500

                # Deliveries done: the good receiver got events, the failing one was given up on.
                def delivered() -> bool:
                    paths = [path for path, _ in receiver.requests]
                    return paths.count("/hook") >= 3 and paths.count("/down") >= 2

                await until(delivered, what="deliveries to both subscriptions")
                await until(lambda: any("gave up" in r for r in capture.records), what="a delivery given up")
                # The dead letter of the ci webhook's stop (an id that does not exist).
                await until(lambda: any("deadletter" in m.subject for m in everything.messages),
                            what="the ci webhook's event dead-lettered")

                for id in deployments.values():
                    logs = await api.get(f"/v2/lm/deployments/{id}/logs", headers=DEFAULT)
                    assert logs.status_code == 200, logs.text
                    seen.deployment_logs += [json.dumps(line) for line in logs.json()["data"]["result"]]
                assert any(line for line in seen.deployment_logs if "replica-" in line), "the replica's own lines"

            seen.bus = [f"{m.subject} {m.headers!r} {(m.data or b'').decode(errors='replace')}"
                        for m in everything.messages]
            seen.stored = await stored_messages(zeroserve)
    seen.logs = list(capture.records)

    values = {
        "client secret": operator_secret, "client secret, base64": b64(operator_secret),
        "client id:secret, base64 (Basic)": b64(f"{operator_client.id}:{operator_secret}"),
        "bearer token": token, "second bearer token": second_token, "expired token": expired,
        "forged token": forged, "garbage token": garbage,
        "token signing key": SIGNING_KEY, "token signing key, base64": b64(SIGNING_KEY),
        "S3 access key": ACCESS_KEY, "S3 secret key": SECRET_KEY, "S3 secret key, base64": b64(SECRET_KEY),
        "inbound webhook secret": INBOUND_SECRET, "inbound webhook key": INBOUND_SECRET.removeprefix("whsec_"),
        "unusable inbound webhook secret": BROKEN_SECRET, "unusable secret, base64": b64(BROKEN_SECRET),
        "receiver's URL token": RECEIVER_TOKEN, "receiver's URL password": RECEIVER_PASSWORD,
        "receiver's Basic credentials": b64(f"hooks:{RECEIVER_PASSWORD}"),
        "NATS password": NATS_PASSWORD, "NATS user:password, base64": b64(f"{NATS_USER}:{NATS_PASSWORD}"),
        **{f"subscription secret {i}": s for i, s in enumerate(subscription_secrets)},
        **{f"subscription key {i}": s.removeprefix("whsec_") for i, s in enumerate(subscription_secrets)},
    }
    hits = seen.hits(values)
    counts = {where: len(texts) for where, texts in vars(seen).items()}
    with capsys.disabled():
        print(f"\nsecrets: {len(values)} values searched in {counts} "
              f"({sum(len(t) for texts in vars(seen).values() for t in texts)} characters); "
              f"{len(hits)} hits; answers left out by design: {len(shown_by_design)}")
    assert hits == [], "\n".join(f"{name} in {where}: {text}" for name, where, text in hits)
    # The search looked where the secrets went: the paths above ran, and left their marks.
    assert counts["logs"] > 500 and counts["bus"] > 20 and counts["stored"] >= counts["bus"] // 2
    assert any("gave up delivering" in r for r in seen.logs)
    assert any('"code":"Unauthorized"' in b and "expired" in b for b in seen.bodies)
    assert any("invalid_client" in b for b in seen.bodies)
    assert any("WebhookTargetNotAllowed" in b for b in seen.bodies)
    assert any("WebhookMisconfigured" in b for b in seen.bodies)
    assert any(f"nats://{NATS_USER}:***@" in r for r in seen.logs), "the NATS URL is logged, redacted"


async def test_a_wrong_nats_password_is_not_repeated_anywhere(settings, guarded_nats):
    wrong = "wrong-nats-pass-" + secrets.token_hex(8)
    capture = Capture()
    with every_logger_at_debug(capture):
        embedded = Node(settings.model_copy(update={"nats_url": f"nats://{NATS_USER}:{wrong}@{guarded_nats}"}))
        # NATS refuses the password: zeroserve does not come up, and says so at once.
        with pytest.raises(ZeroserveError, match="refused zeroserve") as failed:
            async with asyncio.timeout(10):
                async with embedded:
                    pass
    told = "\n".join(capture.records) + str(failed.value) + repr(failed.value)
    assert "Authorization Violation" in told, "NATS said why"
    for value in (wrong, NATS_PASSWORD, b64(f"{NATS_USER}:{wrong}")):
        assert value not in told

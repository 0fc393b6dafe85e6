"""The `zeroserve` command as a user runs it: `up --demo`, Ctrl-C, `publish`."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import free_port

from zeroserve.demo import SAMPLE


def processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{entry.name}: {cmdline}")
    return found


def zeroserve(*args: str, env: dict[str, str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "zeroserve.cli", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    # The per-user config (the profile `up` writes) in the test's own directory, never the user's.
    return {**os.environ, "ZEROSERVE_DATA_DIR": str(tmp_path / "data"), "ZEROSERVE_GATEWAY_PORT": "0",
            "COLUMNS": "200", "NO_COLOR": "1", "XDG_CONFIG_HOME": str(tmp_path / "config")}


@pytest.mark.slow
def test_up_demo_prints_a_curl_that_answers_cold_then_warm_and_ctrl_c_leaves_no_process(env, tmp_path):
    up = zeroserve("up", "--demo", env=env, start_new_session=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        assert up.stdout is not None
        while time.monotonic() < deadline:
            line = up.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "-d '" in line:
                break
        output = "".join(lines)
        url = re.search(r"curl -si -X POST (\S+)", output)
        assert url, f"no curl command printed:\n{output}"
        assert "Deployment iris is RUNNING" in output
        # Inference needs a bearer token: the printed lines get one with `zeroserve token`.
        get_token = re.search(r"TOKEN=\$\((.+) token\)", output)
        assert get_token and '-H "Authorization: Bearer $TOKEN"' in output, output
        token = subprocess.run([*shlex.split(get_token.group(1)), "token"], env=env, capture_output=True,
                               text=True, timeout=60)
        assert token.returncode == 0, token.stderr
        with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {token.stdout.strip()}"}) as client:
            cold = client.post(url.group(1), json=SAMPLE)
            warm = client.post(url.group(1), json=SAMPLE)
        assert cold.status_code == 200, cold.text
        assert len(cold.json()["predictions"]) == 2
        assert cold.headers["X-Cold-Start"] == "true"
        assert warm.headers["X-Cold-Start"] == "false"
        assert processes_mentioning(str(tmp_path / "data")), "nats-server and a replica run meanwhile"
        # `up` wrote a profile: from another directory, without ZEROSERVE_DATA_DIR, the commands find it.
        assert f"profile local written to {tmp_path / 'config' / 'zeroserve' / 'config.yaml'} (current)" in output
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        listed = subprocess.run([sys.executable, "-m", "zeroserve.cli", "deployments", "-o", "json"], cwd=elsewhere,
                                env={k: v for k, v in env.items() if k != "ZEROSERVE_DATA_DIR"}, capture_output=True,
                                text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        assert [d["id"] for d in json.loads(listed.stdout)] == ["iris"]
    finally:
        os.killpg(up.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the whole process group
        try:
            rest, _ = up.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            up.kill()
            raise
    assert up.returncode == 0, rest
    assert "stopped." in rest
    time.sleep(0.2)
    assert processes_mentioning(str(tmp_path / "data")) == [], "Ctrl-C leaves no orphan process"


def test_publish_explains_what_is_wrong_with_its_input(env):
    unknown = subprocess.run([sys.executable, "-m", "zeroserve.cli", "publish", "model.exploded", "-d", "{}"],
                             env=env, capture_output=True, text=True)
    assert unknown.returncode == 2 and "unknown event type 'model.exploded'" in unknown.stderr
    not_json = subprocess.run([sys.executable, "-m", "zeroserve.cli", "publish", "deployment.stopped",
                               "-d", "{oops"], env=env, capture_output=True, text=True)
    assert not_json.returncode == 2 and "not JSON" in not_json.stderr
    invalid = subprocess.run([sys.executable, "-m", "zeroserve.cli", "publish", "deployment.requested",
                              "-d", '{"id": "x"}'], env=env, capture_output=True, text=True)
    assert invalid.returncode == 2 and "executableId" in invalid.stderr
    not_running = subprocess.run([sys.executable, "-m", "zeroserve.cli", "publish", "deployment.stopped",
                                  "-d", '{"id": "iris"}'], env=env, capture_output=True, text=True)
    assert not_running.returncode == 1 and "zeroserve up" in not_running.stderr
    assert "Traceback" not in unknown.stderr + not_json.stderr + invalid.stderr + not_running.stderr


async def test_publish_puts_the_event_on_the_bus_and_reports_duplicates(zeroserve, listen, tmp_path):
    env = {**os.environ, "ZEROSERVE_DATA_DIR": str(zeroserve.settings.data_dir), "COLUMNS": "200"}
    dead = await listen(zeroserve, "zeroserve.team-a.deadletter.>")
    data = tmp_path / "stop.json"
    data.write_text('{"id": "nothing-here"}')

    def publish() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "zeroserve.cli", "publish", "deployment.stopped",
                               "--data", f"@{data}", "--group", "team-a", "--id", "stop-1"],
                              env=env, capture_output=True, text=True)

    import asyncio
    first = await asyncio.to_thread(publish)
    again = await asyncio.to_thread(publish)
    assert first.returncode == 0, first.stderr
    assert "published io.zeroserve.deployment.stopped id=stop-1 group=team-a" in first.stdout
    assert "duplicate" not in first.stdout and "duplicate id: dropped" in again.stdout
    # The platform's own announcements cannot be forged from outside: the gateway refuses them.
    forged = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "zeroserve.cli", "publish", "deployment.status", "-d",
        '{"id": "iris", "status": "RUNNING"}'], env=env, capture_output=True, text=True)
    assert forged.returncode == 2 and "announced by zeroserve itself" in forged.stderr, forged.stderr
    # Stopping a deployment that does not exist ends, after the retries, in the dead letters.
    for _ in range(100):
        if dead.messages:
            break
        await asyncio.sleep(0.1)
    assert dead.messages[0].headers["Zeroserve-Deadletter-Reason"] == "DeploymentNotFound"


def test_bad_settings_are_one_line_naming_the_variable_never_its_value(env):
    secret = "whsec_bm90LWEtdmFsaWQtc2VjcmV0"
    for command, variable, value in (
        ("up", "ZEROSERVE_GATEWAY_PORT", "eighty"),
        ("deployments", "ZEROSERVE_WEBHOOKS", json.dumps({"s3": {"kind": "nope", "secret": secret}})),
    ):
        run = subprocess.run([sys.executable, "-m", "zeroserve.cli", command], env={**env, variable: value},
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 2, run.stderr
        assert run.stderr.startswith(f"invalid settings: {variable}") and "Traceback" not in run.stderr, run.stderr
        assert value not in run.stderr and secret not in run.stderr


def test_up_stops_on_ctrl_c_while_it_waits_for_nats(env, tmp_path):
    # A port nothing listens on: NATS "not up yet".
    up = zeroserve("up", env={**env, "ZEROSERVE_NATS_URL": f"nats://127.0.0.1:{free_port()}"})
    assert up.stdout is not None
    waiting = up.stdout.readline()
    assert "NATS connection" in waiting, waiting  # it says what it waits for
    up.send_signal(signal.SIGINT)
    output, _ = up.communicate(timeout=20)
    assert up.returncode == 0 and "stopped." in output and "Traceback" not in output, output

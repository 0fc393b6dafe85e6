"""A replica cannot be reached on any address but loopback, tried for real in a network
namespace of the test's own (a private host with a second address), so that no traffic leaves
the machine or touches its real interfaces."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from models import train_iris_sklearn

ADDRESS = "10.213.0.1"


def ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


@pytest.fixture
def namespace() -> Iterator[str]:
    """A network namespace with loopback and one more interface, or a skip that says why not."""
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("needs root and iproute2 to make a network namespace")
    name = f"zs-{uuid.uuid4().hex[:8]}"
    made = ip("netns", "add", name)
    if made.returncode != 0:
        pytest.skip(f"cannot make a network namespace here: {made.stderr.strip()}")
    try:
        for command in (["link", "set", "lo", "up"], ["link", "add", "v0", "type", "veth", "peer", "name", "v1"],
                        ["addr", "add", f"{ADDRESS}/24", "dev", "v0"], ["link", "set", "v0", "up"],
                        ["link", "set", "v1", "up"]):
            done = ip("netns", "exec", name, "ip", *command)
            assert done.returncode == 0, done.stderr
        yield name
    finally:
        ip("netns", "del", name)


@pytest.mark.slow
def test_a_replica_refuses_connections_on_every_address_but_loopback(namespace, tmp_path):
    model_dir = train_iris_sklearn(tmp_path / "iris")
    probe = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, str(Path(__file__).with_name("loopback_probe.py")),
         str(model_dir), ADDRESS],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1],
    )
    assert probe.returncode == 0, probe.stderr
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    assert result == {"loopback": 200, "other": "refused", "other:8080": "refused", "other:8081": "refused"}

"""Requests under faults and load: a model server that never gets ready, one killed under load,
and scaling from zero to the maximum and back under 16 clients. No request hangs past its deadline,
failures are fast and say why, and scaling itself fails no request."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
import test_end_to_end as e2e
from conftest import operator, until
from models import IRIS_ROWS, train_iris_sklearn, write_never_loading_sklearn

from zeroserve.events import Status

pytestmark = pytest.mark.slow


async def test_a_model_that_never_gets_ready_answers_504_at_the_deadline_then_is_dead_with_the_reason(
        zeroserve, listen):
    settings = zeroserve.platform.settings
    settings.replica_ready_timeout_s = 1.5
    model_dir = write_never_loading_sklearn(zeroserve.settings.data_dir / "sources" / "stuck")
    running = await e2e.deploy_model(zeroserve, listen, "stuck", model_dir, "stuck-model")
    statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
    url = f"{running['deploymentUrl']}/v1/models/stuck:predict"
    timed_out = 0
    async with operator(zeroserve, timeout=30) as client:
        # Each request waits for a replica at most the deadline, then gets 504; after the third start
        # in a row that never got ready the deployment is DEAD, and requests fail at once.
        while (await zeroserve.platform.store.deployments.get("default", "stuck")).status != Status.DEAD:
            assert timed_out < 10, "still not DEAD after 10 requests"
            started = time.monotonic()
            answer = await client.post(url, json={"instances": IRIS_ROWS})
            waited = time.monotonic() - started
            if answer.status_code == 503:  # DEAD while it waited (its replica's start was the third)
                break
            assert answer.status_code == 504, answer.text
            assert answer.json()["error"]["code"] == "ReplicaNotReady"
            assert waited < settings.replica_ready_timeout_s + 1.0, f"waited {waited:.1f} s past its deadline"
            timed_out += 1
        dead = await statuses.wait_for(lambda e: e["id"] == "stuck" and e["status"] == "DEAD")
        assert dead["reason"] == "ReplicaNeverReady"
        assert dead["message"] == "no replica became ready within 1.5 s, 3 starts in a row"
        started = time.monotonic()
        after = await client.post(url, json={"instances": IRIS_ROWS})
    assert after.status_code == 503 and after.json()["error"]["code"] == "ReplicaNeverReady", after.text
    assert time.monotonic() - started < 1.0
    assert timed_out >= 1
    assert e2e.replica_pids(zeroserve) == []  # every stuck model server was stopped


class Clients:
    """Up to 16 clients that call a deployment back to back while told to; every answer is kept."""

    def __init__(self, client, url: str, most: int = 16) -> None:
        self.client = client
        self.url = url
        self.active = 0  # how many of them call now
        self.answers: list[tuple[float, float, int, str]] = []  # (sent at, seconds, status, error code)
        self._tasks = [asyncio.create_task(self._call(number)) for number in range(most)]

    async def _call(self, number: int) -> None:
        while True:
            if number >= self.active:
                await asyncio.sleep(0.02)
                continue
            sent = time.monotonic()
            try:
                answer = await self.client.post(self.url, json={"instances": IRIS_ROWS})
                status = answer.status_code
                code = "" if status == 200 else answer.json().get("error", {}).get("code", answer.text[:80])
                if status == 200:
                    assert answer.json()["predictions"] == [1, 1]
            except Exception as error:  # noqa: BLE001 - a transport error is a failed request too
                status, code = 0, f"{type(error).__name__}: {error}"
            self.answers.append((sent, time.monotonic() - sent, status, code))

    def failures(self, since: float = 0.0) -> list[tuple[float, float, int, str]]:
        return [answer for answer in self.answers if answer[2] != 200 and answer[0] >= since]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def test_a_model_server_killed_under_load_fails_only_what_it_held_at_once_and_then_serves_again(
        zeroserve, listen):
    running = await e2e.deploy_iris(zeroserve, listen)  # minReplicas 0, maxReplicas 2
    async with operator(zeroserve, timeout=30) as client:
        clients = Clients(client, f"{running['deploymentUrl']}/v1/models/iris:predict")
        try:
            clients.active = 8
            await until(lambda: any(status == 200 for _, _, status, _ in clients.answers), what="a first answer")
            await asyncio.sleep(1.0)
            victims = e2e.replica_pids(zeroserve)
            assert victims, "a model server serves the clients"
            killed_at = time.monotonic()
            for pid in victims:
                os.kill(pid, 9)
            await asyncio.sleep(4.0)
        finally:
            await clients.close()
    failed = clients.failures()
    # Requests the dead replica held, or was given before its death was noticed: 502 at once.
    assert all(status in (502, 503) for _, _, status, _ in failed), failed
    assert all(seconds < 2.0 for _, seconds, _, _ in failed), f"a failure was slow: {failed}"
    # Only requests the replica held when it died, or was given before its death was noticed (the
    # gateway learns of it from the process's exit, within a moment), failed.
    early = [(round(sent - killed_at, 3), round(seconds, 3), status, code) for sent, seconds, status, code in failed
             if sent + seconds < killed_at or sent >= killed_at + 1.0]
    assert early == [], f"failures that ended before the kill or came after it was noticed (sent - kill, took): {early}"
    later = [status for sent, _, status, _ in clients.answers if sent >= killed_at + 2.0]
    assert later and set(later) == {200}, "requests after the kill are served by a new replica"
    assert set(e2e.replica_pids(zeroserve)).isdisjoint(victims)
    print(f"\nreplica kill -9 under 8 clients: {len(clients.answers)} requests, {len(failed)} failed "
          f"(502/503, each within {max((s for _, s, _, _ in failed), default=0):.2f} s), then all served")


async def test_scaling_from_zero_to_the_maximum_and_back_under_16_clients_fails_no_request(zeroserve, listen):
    settings = zeroserve.platform.settings
    settings.idle_window_s = 1.0
    model_dir = train_iris_sklearn(zeroserve.settings.data_dir / "sources" / "iris")
    running = await e2e.deploy_model(zeroserve, listen, "iris", model_dir, "iris-model",
                                     minReplicas="0", maxReplicas="3", scaleTarget="1")
    statuses = await listen(zeroserve, "zeroserve.default.deployment.status")
    cycles = []
    async with operator(zeroserve, timeout=60) as client:
        clients = Clients(client, f"{running['deploymentUrl']}/v1/models/iris:predict")
        try:
            for _ in range(3):  # 16 clients (up to 3 replicas), 2 (scale down while serving), none (to zero)
                seen = len(statuses.json())
                for active, seconds in ((16, 5.0), (2, 3.0), (0, 3.0)):
                    clients.active = active
                    await asyncio.sleep(seconds)
                replicas = [e["runningReplicas"] for e in statuses.json()[seen:] if e["id"] == "iris"]
                cycles.append(replicas)
        finally:
            await clients.close()
    failed = clients.failures()
    assert failed == [], f"{len(failed)} of {len(clients.answers)} requests failed: {failed[:10]}"
    for replicas in cycles:
        assert max(replicas) == 3 and replicas[-1] == 0, f"replicas seen in a cycle: {replicas}"
    seconds = sorted(seconds for _, seconds, _, _ in clients.answers)
    print(f"\nscale 0 -> 3 -> 0 three times under up to 16 clients: {len(clients.answers)} requests, 0 failed, "
          f"p50 {seconds[len(seconds) // 2] * 1000:.0f} ms, slowest {seconds[-1] * 1000:.0f} ms; "
          f"replicas seen: {cycles}")

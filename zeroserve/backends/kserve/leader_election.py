"""One active watcher on a cluster: leader election with a ``coordination.k8s.io`` Lease.

The watcher turns what KServe does into status events; two at once would write each change twice.
Every watcher replica tries to take the Lease; the one that holds it renews it every third of its
duration and works, the others wait for it to expire. Taking and renewing is a JSON patch that
first tests the holder and renew time it read, so two replicas racing for an expired Lease cannot
both win: the API server applies the patch of only one (the other's test fails, HTTP 422).
A holder that cannot renew in time stops working before its Lease can pass to another.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def micro_time(at: datetime) -> str:
    """Kubernetes MicroTime: RFC 3339 with microseconds, in UTC."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Lease:
    def __init__(
        self, api: client.ApiClient, namespace: str, name: str, identity: str, duration_s: float,
        *, clock: Callable[[], datetime] = _now,
    ) -> None:
        self.leases = client.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration = timedelta(seconds=max(1.0, duration_s))
        self.clock = clock

    def try_acquire(self, now: datetime | None = None) -> bool:
        """One attempt to take (or renew) the Lease, as of ``now``; True if this process holds it
        until ``now`` + its duration. Blocks, for at most the request timeout."""
        now = now or self.clock()
        timeout = self.duration.total_seconds() / 3
        spec = {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.duration.total_seconds()),
                "renewTime": micro_time(now)}
        try:
            response: Any = self.leases.read_namespaced_lease(self.name, self.namespace, _preload_content=False,
                                                              _request_timeout=timeout)
            current: dict[str, Any] = json.loads(response.data).get("spec") or {}
        except ApiException as error:
            if error.status != 404:
                raise
            # The client's model writes its times with isoformat(), which leaves the fraction out
            # when it is zero; the API server's MicroTime wants it: never hand it a whole second.
            at = now if now.microsecond else now + timedelta(microseconds=1)
            lease = client.V1Lease.from_dict({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {**spec, "renewTime": at, "acquireTime": at, "leaseTransitions": 0}})
            assert lease is not None
            try:
                self.leases.create_namespaced_lease(self.namespace, lease, _request_timeout=timeout)
            except ApiException as conflict:
                if conflict.status == 409:
                    return False  # another replica created it first
                raise
            log.info("took lease %s/%s (from nobody)", self.namespace, self.name)
            return True

        holder = current.get("holderIdentity")
        if holder and holder != self.identity and not self._expired(current, now):
            return False
        patch: list[dict[str, Any]] = [
            # The compare of compare-and-set: the Lease must still be what was read.
            {"op": "test", "path": "/spec/holderIdentity", "value": holder} if "holderIdentity" in current
            else {"op": "add", "path": "/spec/holderIdentity", "value": None},
            {"op": "test", "path": "/spec/renewTime", "value": current.get("renewTime")} if "renewTime" in current
            else {"op": "add", "path": "/spec/renewTime", "value": None},
            *({"op": "add", "path": f"/spec/{key}", "value": value} for key, value in spec.items()),
        ]
        if holder != self.identity:
            patch += [{"op": "add", "path": "/spec/acquireTime", "value": micro_time(now)},
                      {"op": "add", "path": "/spec/leaseTransitions", "value": int(current.get("leaseTransitions")
                                                                                    or 0) + 1}]
        try:
            self.leases.patch_namespaced_lease(self.name, self.namespace, patch,
                                               _content_type="application/json-patch+json", _request_timeout=timeout)
        except ApiException as error:
            if error.status in (409, 422, 500):  # the test failed: someone else changed it first
                return False
            raise
        if holder != self.identity:
            log.info("took lease %s/%s (from %s)", self.namespace, self.name, holder or "nobody")
        return True

    def _expired(self, spec: dict[str, Any], now: datetime) -> bool:
        renewed = spec.get("renewTime")
        if not renewed:
            return True
        try:
            at = datetime.fromisoformat(str(renewed).replace("Z", "+00:00"))
        except ValueError:
            return True
        duration = timedelta(seconds=int(spec.get("leaseDurationSeconds") or self.duration.total_seconds()))
        return at + duration < now

    async def hold(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``work`` whenever this process holds the Lease; stop it before the Lease can pass to
        another (a renewal that fails, or hangs, long enough). Runs until cancelled."""
        every = self.duration.total_seconds() / 3
        while True:
            at = self.clock()
            if not await self._attempt(at, every):
                await asyncio.sleep(every)
                continue
            held_until = at + self.duration
            task = asyncio.create_task(work(), name=f"lease-{self.name}")
            try:
                while not task.done():
                    await asyncio.wait({task}, timeout=every)
                    if task.done():
                        break
                    at = self.clock()
                    if await self._attempt(at, every):
                        held_until = at + self.duration
                    elif self.clock() + timedelta(seconds=every) >= held_until:
                        log.warning("lost lease %s/%s: stopping until it is ours again", self.namespace, self.name)
                        break
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("work under lease %s failed: %r", self.name, task.exception())

    async def _attempt(self, at: datetime, timeout: float) -> bool:
        try:  # the thread may go on after the timeout; what it does then is decided by the Lease's test
            async with asyncio.timeout(timeout):  # not wait_for, which can swallow a cancellation (3.11)
                return await asyncio.to_thread(self.try_acquire, at)
        except Exception as error:  # the API server unreachable or slow: not held, as far as we can tell
            log.warning("lease %s/%s: %s", self.namespace, self.name, error or type(error).__name__)
            return False

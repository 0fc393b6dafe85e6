"""The learned idle window (serving/idle_window.py): from a histogram of idle times to a window, and a
deployment on this machine that keeps, stops and pre-warms its replica as its idle times say."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from conftest import until
from models import train_iris_sklearn

from zeroserve.artifacts.cache import ModelCache
from zeroserve.backends.local import LocalBackend
from zeroserve.core.bus import Bus
from zeroserve.deployments.logs import DeploymentLogs
from zeroserve.errors import InvalidConfiguration
from zeroserve.serving.gpus import GpuInventory
from zeroserve.serving.idle_window import IdleTimes, Learning, Window
from zeroserve.serving.spec import ServiceSpec
from zeroserve.settings import Settings
from zeroserve.templates.plans import load_resource_plans
from zeroserve.templates.render import render
from zeroserve.templates.serving import load_templates

LEARNING = Learning()  # one-minute bins, four hours, 5th and 99th percentiles, 10% margin, 10 samples
FALLBACK_S = 60.0


def histogram(**bins: int) -> list[int]:
    """Counts per one-minute bin: ``histogram(b3=98, b30=2)``."""
    counts = [0] * LEARNING.bins
    for name, count in bins.items():
        counts[int(name[1:])] = count
    return counts


# -- the policy: histogram -> window ------------------------------------------------------------------


def test_a_regular_caller_gets_a_prewarm_before_its_period_and_a_keep_alive_past_it():
    window = LEARNING.window(histogram(b10=12), 0, FALLBACK_S)  # every ten minutes

    assert window.learned
    assert window.prewarm_s == pytest.approx(10 * 60 * 0.9)  # the 5th percentile's bin, 10% earlier
    assert window.prewarm_s + window.keep_alive_s == pytest.approx(11 * 60 * 1.1)  # the 99th's bin end, 10% later
    assert not window.wants_replica(30)  # stopped at once: nothing is expected for nine minutes
    assert not window.wants_replica(530)
    assert window.wants_replica(560) and window.wants_replica(600) and window.wants_replica(700)
    assert not window.wants_replica(730)


def test_the_prewarm_is_the_5th_percentile_and_not_the_first_idle_time():
    # 4 of 100 idle times are short: below the 5th percentile, so they do not pull the pre-warm in.
    assert LEARNING.window(histogram(b2=4, b20=96), 0, FALLBACK_S).prewarm_s == pytest.approx(20 * 60 * 0.9)
    # 5 of 100 are: the pre-warm starts at their bin.
    assert LEARNING.window(histogram(b2=5, b20=95), 0, FALLBACK_S).prewarm_s == pytest.approx(2 * 60 * 0.9)


def test_the_keep_alive_reaches_the_99th_percentile_and_not_the_longest_idle_time():
    # 1 of 100 idle times is long: past the 99th percentile, the keep-alive ends with the bulk.
    short = LEARNING.window(histogram(b0=99, b30=1), 0, FALLBACK_S)
    assert (short.prewarm_s, short.prewarm_s + short.keep_alive_s) == (0.0, pytest.approx(60 * 1.1))
    # 2 of 100 are: the keep-alive reaches theirs.
    long = LEARNING.window(histogram(b0=98, b30=2), 0, FALLBACK_S)
    assert long.keep_alive_s == pytest.approx(31 * 60 * 1.1)


def test_too_few_idle_times_or_too_many_beyond_four_hours_fall_back_to_the_fixed_window():
    assert LEARNING.window(histogram(b10=9), 0, FALLBACK_S) == Window(0.0, FALLBACK_S)
    assert LEARNING.window(histogram(b10=10), 11, FALLBACK_S) == Window(0.0, FALLBACK_S)  # 11 of 21 beyond
    assert LEARNING.window(histogram(b10=10), 10, FALLBACK_S).learned  # half beyond: still learned
    assert Window(0.0, FALLBACK_S).wants_replica(FALLBACK_S) and not Window(0.0, FALLBACK_S).wants_replica(61)


def test_idle_times_are_counted_between_requests_of_the_deployment_in_bounded_memory():
    idle = IdleTimes(LEARNING)
    idle.began(0.0, LEARNING)  # the first request ends no idle time
    idle.began(1.0, LEARNING)  # a second one in flight: the deployment is busy, not idle
    idle.ended(5.0)
    assert idle.since is None  # one still in flight
    idle.ended(10.0)
    for start in range(11):
        idle.began(10.0 + 610 * (start + 1) - 10, LEARNING)
        idle.ended(10.0 + 610 * (start + 1))
    idle.began(10**7, LEARNING)  # months later: beyond the histogram
    assert idle.counts[10] == 11 and sum(idle.counts) == 11 and idle.out_of_bounds == 1
    assert len(idle.counts) == LEARNING.bins  # whatever the traffic
    assert idle.window(LEARNING, FALLBACK_S).prewarm_s == pytest.approx(540)


# -- on this machine: the local backend's autoscaler ------------------------------------------------------


class Clock:
    """Monotonic time that a test moves on: minutes of idle time pass in no time."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


def inference_service(settings: Settings, model_dir: Path, id: str, **parameters: str) -> dict:
    template = load_templates(settings.templates_dir)["sklearn"]
    return render(template, deployment_id=id, group="default", parameters=parameters,
                  artifacts={"model": model_dir.as_uri()}, plans=load_resource_plans(settings), settings=settings)


def test_fixed_is_every_deployment_s_idle_window_unless_it_asks_and_a_bad_value_is_refused(settings):
    model_dir = settings.data_dir / "model"
    assert ServiceSpec.from_inference_service(inference_service(settings, model_dir, "a")).idle_window == "fixed"
    learned = inference_service(settings, model_dir, "b", idleWindow="learned")
    assert learned["metadata"]["annotations"]["serving.zeroserve.io/idle-window"] == "learned"
    assert ServiceSpec.from_inference_service(learned).idle_window == "learned"
    with pytest.raises(InvalidConfiguration, match="must be 'fixed' or 'learned', not 'sometimes'"):
        inference_service(settings, model_dir, "c", idleWindow="sometimes")


@pytest.fixture
async def backend(nats_server, settings) -> LocalBackend:
    bus = await Bus.connect(nats_server.url, settings)
    logs = DeploymentLogs(bus)
    logs.start()
    backend = LocalBackend(settings, ModelCache(settings), logs, GpuInventory([]))
    yield backend
    await backend.close()
    await bus.close()


async def request(backend: LocalBackend, id: str) -> bool:
    """One request, as the gateway makes it; whether it was cold (the answer's X-Cold-Start)."""
    async with backend.activator.assign("default", id) as assignment:
        return assignment.cold


@pytest.mark.slow  # eight replica starts: 8 s on the shared 2-core VM, 20 s at its busiest
async def test_a_learned_window_keeps_a_regular_caller_warm_where_the_fixed_one_goes_cold(settings, backend):
    settings.idle_window_s = 20.0  # the fixed window, and the learned one's fallback
    model_dir = train_iris_sklearn(settings.data_dir / "iris")
    # Called every 50 s (inside one bin: kept, never stopped), every 10 min (stopped, pre-warmed), and as fixed.
    for id, parameters in (("every50s", {"idleWindow": "learned"}), ("every10min", {"idleWindow": "learned"}),
                           ("fixed", {})):
        assert await backend.apply(inference_service(settings, model_dir, id, **parameters))
    autoscaler = backend.autoscaler
    await asyncio.wait_for(autoscaler.forks.wait_ready(), 60)  # replicas fork from here on: a cold start is brief
    autoscaler.stop_reaper()  # the test reaps, when its clock says
    autoscaler.clock = clock = Clock()
    serving = {id: lambda id=id: len(backend.services["default", id].serving) for id in ("every50s", "every10min",
                                                                                          "fixed")}

    # Fewer than ten idle times, or none yet (a replica started before any request): the fixed window.
    assert await request(backend, "every50s")
    assert await request(backend, "fixed")
    await autoscaler.ensure_replicas(backend.services["default", "every10min"], 1)
    clock.offset += 30
    await autoscaler.reap()
    assert serving["every50s"]() == serving["fixed"]() == serving["every10min"]() == 0

    # It learns: for two hours a request every 50 s to one, every ten minutes to the other (no reaping
    # meanwhile: the histograms are the point here).
    assert await request(backend, "every50s")
    assert await request(backend, "every10min")
    assert await request(backend, "fixed")
    for tick in range(1, 12 * 11 + 1):
        clock.offset += 50
        assert not await request(backend, "every50s")
        if tick % 12 == 0:
            assert not await request(backend, "every10min")
    windows = {id: idle.window(autoscaler.learning, 20.0) for (_, id), idle in autoscaler.idle_times.items()}
    assert windows["every50s"] == Window(0.0, pytest.approx(66.0), learned=True)
    assert windows["every10min"].prewarm_s == pytest.approx(540.0)
    assert "fixed" not in windows  # a fixed deployment keeps no histogram

    # 50 s later: the fixed window (20 s) has stopped its replica, the learned one keeps it (66 s), and
    # the deployment called every ten minutes was stopped at once (nothing expected before 540 s).
    clock.offset += 50
    await autoscaler.reap()
    assert serving["fixed"]() == 0
    assert serving["every50s"]() == 1
    assert serving["every10min"]() == 0
    assert not await request(backend, "every50s")
    assert await request(backend, "fixed")

    # 560 s after its last request, past its pre-warm: its replica starts, and the request due at 600 s is warm.
    clock.offset += 510
    await autoscaler.reap()
    await until(serving["every10min"], what="the pre-warmed replica to be ready")
    clock.offset += 40
    assert not await request(backend, "every10min")

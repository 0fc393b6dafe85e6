"""The capacity simulation (simulation/, `make simulate`): reproducible, and its policies behave at their limits."""

import sys
from pathlib import Path

import pytest

pytest.importorskip("simpy", reason="simpy is in the dev extra; requirements/lock.txt gains it at the next `make lock`")

# simulation/ is a tool at the repository root, not in the wheel: importable from there, wherever pytest runs.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulation.__main__ import run  # noqa: E402
from simulation.idle_window import Idle, fixed  # noqa: E402
from simulation.warm_pool import Pool  # noqa: E402
from simulation.workload import Fleet, draw  # noqa: E402

FLEET = Fleet(deployments=300, days=1.0)


def test_same_seed_gives_the_same_numbers():
    first, again = run(FLEET, seed=7, sweep=(30,)), run(FLEET, seed=7, sweep=(30,))
    assert [o.row() for o in first["fixed"]] == [o.row() for o in again["fixed"]]
    assert first["learned"].row() == again["learned"].row()
    assert run(FLEET, seed=8, sweep=(30,))["learned"].row() != first["learned"].row()


def test_a_zero_window_makes_every_request_cold():
    trace = draw(FLEET, seed=1)
    zero = fixed(trace, Idle.of(trace), 0.0)
    assert zero.cold_starts == zero.requests > 0


def test_a_huge_window_makes_only_first_requests_cold():
    trace = draw(FLEET, seed=1)
    huge = fixed(trace, Idle.of(trace), 1e12)
    assert huge.cold_starts == len(set(trace.deployment.tolist()))


def test_the_learned_window_is_never_worse_than_always_cold_and_reports_its_fallbacks():
    result = run(FLEET, seed=3, sweep=(0,))
    always_cold, learned = result["fixed"][0], result["learned"]
    assert learned.cold_starts <= always_cold.cold_starts
    assert learned.fallbacks > 0  # the rarely called deployments never gather enough idle times
    assert learned.replica_s <= learned.always_on_replica_s


def test_a_warm_pool_shortens_cold_starts_and_costs_its_replicas():
    trace = draw(FLEET, seed=2)
    idle = Idle.of(trace)
    plain, pooled = fixed(trace, idle, 60.0), fixed(trace, idle, 60.0, Pool(10**6, load_fraction=0.5))
    assert pooled.cold_starts == pooled.pool_hits == plain.cold_starts
    assert pooled.added_latency_mean_s == pytest.approx(plain.added_latency_mean_s / 2)
    assert pooled.replica_s > plain.replica_s


def test_the_simulation_decides_with_the_autoscaler_s_own_policy():
    import numpy as np

    from simulation.learned import Histograms
    from zeroserve.serving.idle_window import Learning

    histograms = Histograms(2, Learning(), fallback_window_s=60.0)
    # Deployment 0: twelve idle times of ten minutes (learned); deployment 1: three (too few: the fixed window).
    histograms.observe(np.array([0] * 12 + [1] * 3), np.array([610.0] * 12 + [30.0] * 3))
    histograms.decide(np.array([0, 1]))
    autoscaler = Learning().window(histograms.counts[0].tolist(), 0, 60.0)
    assert (histograms.prewarm_s[0], histograms.keep_alive_s[0]) == (autoscaler.prewarm_s, autoscaler.keep_alive_s)
    assert histograms.prewarm_s[0] == pytest.approx(540.0)
    assert (histograms.prewarm_s[1], histograms.keep_alive_s[1], histograms.fallbacks) == (0.0, 60.0, 1)

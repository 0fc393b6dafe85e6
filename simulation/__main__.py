"""`make simulate`: run the fleet under the fixed idle windows and the learned one, print a table, draw the plots.

python -m simulation [--deployments 100000] [--days 3] [--seed 16] [--out docs/capacity]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from simulation.idle_window import Idle, Outcome, fixed
from simulation.learned import learned
from simulation.warm_pool import Pool
from simulation.workload import Fleet, draw
from zeroserve.serving.idle_window import Learning
from zeroserve.settings import Settings

# zeroserve's own default window (ZEROSERVE_IDLE_WINDOW_S), read from its settings class, not the environment.
DEFAULT_WINDOW_S = float(Settings.model_fields["idle_window_s"].default)
SWEEP_S = (10, 30, 60, 120, 300, 600, 1200, 1800)
POOL_SIZES = (1, 4, 16, 64, 256)


def run(fleet: Fleet, seed: int, window_s: float = DEFAULT_WINDOW_S, sweep=SWEEP_S, pool_sizes=POOL_SIZES) -> dict:
    """Every policy on the same trace, without and with warm pools; the same seed gives the same numbers."""
    trace = draw(fleet, seed)
    idle = Idle.of(trace)
    windows = sorted({*sweep, window_s})
    pools = tuple(Pool(size) for size in pool_sizes)
    learned_runs = learned(trace, idle, Learning(), window_s, (None, *pools))
    return {
        "seed": seed,
        "fleet": asdict(fleet),
        "default_window_s": window_s,
        "fixed": [fixed(trace, idle, w) for w in windows],
        "learned": learned_runs[0],
        "fixed_pooled": [fixed(trace, idle, window_s, pool) for pool in pools],
        "learned_pooled": learned_runs[1:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m simulation", description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=Fleet.deployments)
    parser.add_argument("--days", type=float, default=Fleet.days)
    parser.add_argument("--requests-per-deployment-day", type=float, default=Fleet.requests_per_deployment_day)
    parser.add_argument("--gpu-fraction", type=float, default=Fleet.gpu_fraction)
    parser.add_argument("--periodic-fraction", type=float, default=Fleet.periodic_fraction)
    parser.add_argument("--window", type=float, default=DEFAULT_WINDOW_S, help="the fixed idle window (s)")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("docs/capacity"))
    args = parser.parse_args()
    fleet = replace(
        Fleet(),
        deployments=args.deployments,
        days=args.days,
        requests_per_deployment_day=args.requests_per_deployment_day,
        gpu_fraction=args.gpu_fraction,
        periodic_fraction=args.periodic_fraction,
    )
    started = time.monotonic()
    result = run(fleet, args.seed, args.window)
    wall_s = time.monotonic() - started
    rows = [o.row() for o in (*result["fixed"], result["learned"], *result["fixed_pooled"], *result["learned_pooled"])]
    print_table(result, rows, wall_s)
    args.out.mkdir(parents=True, exist_ok=True)
    write(args.out, result, rows)
    plot(args.out, result)


def print_table(result: dict, rows: list[dict], wall_s: float) -> None:
    fleet = result["fleet"]
    print(
        f"seed {result['seed']}: {fleet['deployments']} deployments, {fleet['days']:g} days, "
        f"{rows[0]['requests']} requests, simulated in {wall_s:.1f} s"
    )
    print(f"{'policy':<22}{'cold starts':>12}{'cold rate':>11}{'added ms':>10}{'replica-s / on':>16}{'GPU-h':>10}")
    for r in rows:
        print(
            f"{r['policy']:<22}{r['cold_starts']:>12}{r['cold_start_rate']:>11.4f}"
            f"{r['added_latency_mean_s'] * 1000:>10.1f}{r['replica_s'] / r['always_on_replica_s']:>16.4f}"
            f"{r['gpu_hours']:>10.0f}"
        )
    print(
        f"always on: {rows[0]['always_on_gpu_hours']:.0f} GPU-h; "
        f"learned policy fallbacks {result['learned'].fallbacks}; pools: K replicas per class, cold starts "
        "served by the pool take half as long"
    )


def write(out: Path, result: dict, rows: list[dict]) -> None:
    with open(out / "simulation.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = {"seed": result["seed"], "fleet": result["fleet"], "policies": rows}
    (out / "simulation.json").write_text(json.dumps(summary, indent=2) + "\n")


def plot(out: Path, result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    fixed_runs: list[Outcome] = result["fixed"]
    learned_run: Outcome = result["learned"]

    def share(o: Outcome) -> float:
        return o.replica_s / o.always_on_replica_s

    figure, axes = pyplot.subplots(figsize=(7, 4.5))
    axes.plot([share(o) for o in fixed_runs], [o.cold_start_rate for o in fixed_runs], "o-", label="fixed idle window")
    for o in fixed_runs:
        axes.annotate(
            o.policy.removeprefix("fixed "),
            (share(o), o.cold_start_rate),
            fontsize=8,
            xytext=(4, 4),
            textcoords="offset points",
        )
    axes.plot([share(learned_run)], [learned_run.cold_start_rate], "r*", markersize=14, label="learned (histogram)")
    axes.set_xscale("log")
    fleet = f"{result['fleet']['deployments']} deployments, {result['fleet']['days']:g} days, seed {result['seed']}"
    _finish(figure, axes, "replica-seconds / always-on replica-seconds", "cold starts / requests", fleet,
            out / "idle-window.png")

    figure, axes = pyplot.subplots(figsize=(7, 4.5))
    windows = [float(o.policy.split()[1]) for o in fixed_runs]
    axes.plot(windows, [o.added_latency_mean_s * 1000 for o in fixed_runs], "o-", label="fixed idle window")
    axes.axhline(learned_run.added_latency_mean_s * 1000, color="r", linestyle="--", label="learned (histogram)")
    axes.set_xscale("log")
    _finish(figure, axes, "fixed idle window (s)", "mean added latency per request (ms)",
            f"cold-start latency, seed {result['seed']}", out / "added-latency.png")

    figure, axes = pyplot.subplots(figsize=(7, 4.5))
    default = next(o for o in fixed_runs if float(o.policy.split()[1]) == result["default_window_s"])
    for label, plain, pooled, style in (
        (f"fixed {result['default_window_s']:g} s", default, result["fixed_pooled"], "o-"),
        ("learned", learned_run, result["learned_pooled"], "r*-"),
    ):
        runs = [plain, *pooled]
        axes.plot([o.pool_size for o in runs], [o.added_latency_mean_s * 1000 for o in runs], style, label=label)
    axes.set_xscale("symlog", linthresh=1)
    _finish(figure, axes, "warm pool: replicas per class (CPU, GPU)", "mean added latency per request (ms)",
            f"warm pool, seed {result['seed']}", out / "warm-pool.png")
    pyplot.close("all")


def _finish(figure: Any, axes: Any, xlabel: str, ylabel: str, title: str, path: Path) -> None:
    """The axes labelled, gridded and with their legend, the figure written to ``path``."""
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    main()

"""Simulation-gate throughput: simulated km per CPU-second and episodes per second (wall,
every core through the process pool), next to highway-env's bare stepping speed measured in
the same run; then the batched backend (#13) against highway-env on the same roads, and the
ego-km per day this machine reaches with it.

    python benchmarks/simulation.py [--seeds 4] [--seconds 15] [--workers N]
                                    [--batched-seeds 1000] [--batched-seconds 20]

Bare: highway-env's road stepping alone on the same scenarios (IDM/MOBIL agents, 10 Hz, no
policy, no metrics; environment creation excluded), in simulated seconds and km per
CPU-second. Gate: ``run_suite`` of a stock suite (4 roads x seeds) for the baseline expert and a
candidate (the expert's reference run included, as in the gate).

Batched: ``run_suite(..., backend="batched")`` of a stock suite of highway and merge
(``--batched-seeds`` per road) for the same two policies, on every worker; highway-env's
km per CPU-second on the same two roads comes from the gate run above. km per day: the wall
rate measured with every worker, times 86,400 (and the CPU rate times the cores, which is
what it would be without the pool's start-up).
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import warnings

from dataloop.fleet.simulator.traffic import DT, SIM_HZ, World
from dataloop.simulation.policies import Timid
from dataloop.simulation.runner import run_suite
from dataloop.simulation.scenario import stock

warnings.filterwarnings("ignore", category=DeprecationWarning)


def _cpu() -> float:
    own = time.process_time()
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own + r.ru_utime + r.ru_stime


def bare(suite: list) -> tuple[float, float]:
    """(simulated s per CPU-s, km per CPU-s) of highway-env stepping alone over the same
    scenarios (the ego driven by highway-env's own IDM/MOBIL, no observation, no metrics)."""
    km = sim_s = cpu = 0.0
    for scenario in suite:
        world = World(scenario.road, scenario.seed)
        start = time.process_time()
        for _ in range(int(scenario.seconds * SIM_HZ)):
            world.step()
            km += world.ego.speed * DT / 1000
            sim_s += DT
        cpu += time.process_time() - start
    return sim_s / cpu, km / cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--batched-seeds", type=int, default=1000)
    ap.add_argument("--batched-seconds", type=float, default=20.0)
    args = ap.parse_args()
    seeds = list(range(1, args.seeds + 1))
    suite = stock(["highway", "merge", "roundabout", "intersection"], seeds, args.seconds)
    bare_sps, bare_kmps = bare(suite)
    cpu0, wall0 = _cpu(), time.perf_counter()
    rows = run_suite(suite, ["baseline", Timid()], workers=args.workers)
    cpu, wall = _cpu() - cpu0, time.perf_counter() - wall0
    # Episodes actually simulated: the expert once per scenario (shared with the baseline
    # candidate) plus the other candidate.
    episodes = len(suite) * 2
    km = sum(r["distance_m"] for r in rows) / 1000
    sim_s = sum(r["steps"] for r in rows) * DT
    print(f"bare highway-env stepping : {bare_sps:7.1f} sim-s/CPU-s  {bare_kmps:6.3f} km/CPU-s")
    print(
        f"gate (policy + metrics)   : {sim_s / cpu:7.1f} sim-s/CPU-s  {km / cpu:6.3f} km/CPU-s"
        f"  ({km / cpu / bare_kmps:.2f}x bare)"
    )
    print(
        f"episodes                  : {episodes} in {wall:.1f} s wall on {args.workers} workers"
        f" = {episodes / wall:.2f} episodes/s ({episodes / cpu:.2f} per CPU-s)"
    )
    same_roads = [r for r in rows if r["scenario_id"].split("-")[1] in ("highway", "merge")]
    he_cpu = cpu * sum(r["steps"] for r in same_roads) / sum(r["steps"] for r in rows)
    he_kmps = sum(r["distance_m"] for r in same_roads) / 1000 / he_cpu

    first = 1001
    large = stock(
        ["highway", "merge"], list(range(first, first + args.batched_seeds)), args.batched_seconds
    )
    cpu0, wall0 = _cpu(), time.perf_counter()
    batched_rows = run_suite(large, ["baseline", Timid()], workers=args.workers, backend="batched")
    b_cpu, b_wall = _cpu() - cpu0, time.perf_counter() - wall0
    b_km = sum(r["distance_m"] for r in batched_rows) / 1000
    b_kmps = b_km / b_cpu
    print(
        f"batched backend           : {len(large)} scenarios x 2 policies, {b_km:,.0f} km in"
        f" {b_wall:.1f} s wall / {b_cpu:.1f} CPU-s"
    )
    print(
        f"  km per CPU-second       : batched {b_kmps:8.1f}   highway-env {he_kmps:6.3f}"
        "  (highway + merge, policy + metrics)"
    )
    print(f"  batched / highway-env   : {b_kmps / he_kmps:8.0f}x")
    cores = os.cpu_count() or 1
    print(
        f"  km per day, this machine: {b_km / b_wall * 86400:,.0f} (measured wall, "
        f"{args.workers} workers); {cores} cores x 86,400 s x km/CPU-s ="
        f" {cores * 86400 * b_kmps:,.0f}  (goal 10,000,000)"
    )


if __name__ == "__main__":
    main()

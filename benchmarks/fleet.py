"""Simulated drive-minutes per CPU-minute, next to the bare simulator's stepping speed,
measured in the same run.

    python benchmarks/fleet.py [--vehicles 2] [--minutes 2]

Bare: highway-env's road stepping alone (the same highway traffic, IDM/MOBIL agents, 10 Hz),
no sensors, camera or log. Fleet: `simulate_fleet` end to end (traffic, policy and safety
driver, sensors at contract rates, camera frames, faults, MCAP writing). Goal: >= 5
drive-minutes per CPU-minute.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from dataloop.fleet.simulator.config import SimConfig
from dataloop.fleet.simulator.fleet import simulate_fleet
from dataloop.fleet.simulator.traffic import SIM_HZ, World


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def bare_minutes_per_cpu_minute(seconds: float = 60.0) -> float:
    world = World("highway", seed=1)
    start = time.process_time()
    for _ in range(int(seconds * SIM_HZ)):
        world.step()
    return seconds / (time.process_time() - start)


def fleet_minutes_per_cpu_minute(vehicles: int, minutes: float, roads: dict) -> float:
    config = replace(SimConfig(), roads=roads)
    with tempfile.TemporaryDirectory() as out:
        before = _children_cpu() + time.process_time()
        reports = simulate_fleet(
            vehicles=vehicles,
            minutes=minutes,
            seed=1,
            out=Path(out),
            start=datetime(2026, 11, 25, 8, tzinfo=UTC),
            config=config,
        )
        cpu = _children_cpu() + time.process_time() - before
    return sum(r.seconds for r in reports) / cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--vehicles", type=int, default=2)
    ap.add_argument("--minutes", type=float, default=2.0)
    args = ap.parse_args()
    bare = bare_minutes_per_cpu_minute()
    highway = fleet_minutes_per_cpu_minute(args.vehicles, args.minutes, {"highway": 1.0})
    mixed = fleet_minutes_per_cpu_minute(args.vehicles, args.minutes, SimConfig().roads)
    print(f"bare highway-env stepping:      {bare:6.1f} drive-min per CPU-min")
    print(
        f"fleet, highway only:            {highway:6.1f} drive-min per CPU-min "
        f"({highway / bare:.2f}x bare)"
    )
    print(f"fleet, mixed roads (default):   {mixed:6.1f} drive-min per CPU-min  (goal >= 5)")


if __name__ == "__main__":
    main()

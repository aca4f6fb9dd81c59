"""Issue #23's fleet-scale measurements in one run, each against a baseline measured in the
same run, with the goals:

- an arrival hour's per-drive work on 1 worker against all cores (``hour_pool.py``);
- the hour's ``ingest_job`` on two Celery workers against in process (``celery_hour.py``);
- one upload-sensor tick with 10,000 queued events against listing (``upload_queue.py``);
- mining 100 drive-hours against a plain DuckDB scan of the same tables (``curation.py``);
- offboard labelling drive-hours per CPU-hour (``labeling.py``).

    python benchmarks/scale.py [--quick] [--json FILE]

``--quick`` shrinks every size (a smoke run of a few minutes); the defaults are the issue's
sizes. Each part also runs on its own, with more options.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import celery_hour  # noqa: E402
import curation  # noqa: E402
import hour_pool  # noqa: E402
import labeling  # noqa: E402
import upload_queue  # noqa: E402

FULL = {"drives": 8, "vehicles": 4, "events": 10_000, "drive_hours": 100.0, "label_min": 6.0}
QUICK = {"drives": 4, "vehicles": 2, "events": 1_000, "drive_hours": 5.0, "label_min": 1.0}


def _part(name: str, run):
    print(f"\n== {name}", flush=True)
    start = time.perf_counter()
    result = run()
    print(f"   ({time.perf_counter() - start:.0f} s)", flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path, help="also write every measurement to this file")
    args = ap.parse_args()
    size = QUICK if args.quick else FULL
    load = os.getloadavg()[0]

    pool = _part("workers", lambda: hour_pool.measure(drives=size["drives"], repeats=3))
    hour_pool.report(pool)
    celery = _part("celery", lambda: celery_hour.measure(size["vehicles"], 1.0))
    tick = _part("upload queue", lambda: upload_queue.measure(size["events"], "amqp"))
    mining = _part("mining", lambda: curation.mining_benchmark(size["drive_hours"]))
    labels = _part("labelling", lambda: labeling.measure(4, size["label_min"]))

    n, s = pool["workers"], celery["seconds"]
    rows = [
        (f"ingest, {n} workers vs 1", f"{pool['stages']['ingest']['ratio']:.2f}x", ">= 1.7x",
         pool["stages"]["ingest"]["ratio"] >= 1.7),
        (f"whole hour, {n} workers vs 1", f"{pool['hour']['ratio']:.2f}x", "", None),
        ("ingest_job, 2 Celery workers vs 1 core", f"{s['one'] / s['celery']:.2f}x", "", None),
        ("ingest_job, worker pool vs 1 core", f"{s['one'] / s['pool']:.2f}x", "", None),
        (f"tick at {tick['events']:,} events", f"{tick['queue_tick_s']:.1f} s "
         f"({tick['queue_vs_listing']:.2f}x listing)", "well inside 60 s",
         tick["queue_tick_of_timeout"] < 0.25 and tick["same_runs_as_listing"]),
        (f"mining {mining['drive_hours']:.0f} drive-hours", f"{mining['mining_s']:.0f} s "
         f"({mining['mining_s'] / mining['scan_s']:.0f}x a plain scan)", "<= 5x the scan",
         mining["mining_s"] <= 5 * mining["scan_s"]),
        ("labelling", f"{labels['drive_hours_per_cpu_hour']:,.0f} drive-hours per CPU-hour",
         ">= 1,000", labels["drive_hours_per_cpu_hour"] >= 1000),
    ]  # fmt: skip
    print(f"\n{'':<42}{'measured':<42}{'goal':<20}met")
    for label, value, goal, met in rows:
        print(f"{label:<42}{value:<42}{goal:<20}{'' if met is None else 'yes' if met else 'NO'}")
    print(f"(load average {load:.1f} before, {os.getloadavg()[0]:.1f} after; 2 cores here)")
    if args.json:
        everything = {"pool": pool, "celery": celery, "tick": tick, "mining": mining}
        args.json.write_text(json.dumps({**everything, "labels": labels}, indent=1))


if __name__ == "__main__":
    main()

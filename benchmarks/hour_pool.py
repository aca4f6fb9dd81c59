"""An arrival hour's per-drive work on 1 worker against N, in the same run (DATALOOP_WORKERS).

    python benchmarks/hour_pool.py [--drives 8] [--minutes 1] [--workers N] [--repeats 3]

Each repeat uploads the same drives to a fresh local lake and runs the hour's stages as the
hourly assets do (ingest, quality, compliance, labels), timing each, once with
``DATALOOP_WORKERS=1`` (in process) and once with N (default: the cores this process may run
on). Prints drives/s per stage and the ratio N/1 (issue #23's goal for ingest on 2 cores:
>= 1.7x). Before timing, one small hour on N workers starts the fork server (its preloads
are paid once per process: printed as the pool's start-up cost).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from dataloop.fleet.synthetic import write_synthetic_drive
from dataloop.fleet.uploader import upload_drive
from dataloop.infra.workers import worker_count
from dataloop.ingest.hour import arrival_hours, ingest_hour, upload_days
from dataloop.labeling.hour import label_hour
from dataloop.labeling.offboard import load_params
from dataloop.lake.local import LocalStore
from dataloop.quality.anonymise import HaarDetector
from dataloop.quality.approved import approve_hour
from dataloop.quality.compliance import comply_hour
from dataloop.quality.hour import check_hour
from dataloop.quality.suites import load_suites
from dataloop.rules import rules_dir

STAGES = ("ingest", "quality", "compliance", "labels")


def hour_of(paths: list[Path], root: Path) -> tuple[LocalStore, list[str]]:
    store = LocalStore(root)
    for p in paths:
        upload_drive(store, p, vehicle="bench")
    return store, arrival_hours(store, upload_days(store))


def run_hour(paths: list[Path], root: Path, workers: int) -> dict[str, float]:
    """Seconds per stage over the drives' arrival hours (usually one), on ``workers``."""
    os.environ["DATALOOP_WORKERS"] = str(workers)
    store, hours = hour_of(paths, root)
    suites, detector = load_suites(), HaarDetector()
    params = load_params(rules_dir() / "labeling" / "offboard.yaml")
    took: dict[str, float] = defaultdict(float)

    def timed(stage: str, step, *args) -> None:
        start = time.perf_counter()
        step(store, *args)
        took[stage] += time.perf_counter() - start

    for hour in hours:
        timed("ingest", ingest_hour, hour)
        timed("quality", check_hour, hour, suites)
        approve_hour(store, hour)
        timed("compliance", comply_hour, hour, detector, [], "bench")
        timed("labels", label_hour, hour, params)
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--drives", type=int, default=8)
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--workers", type=int, default=None, help="N (default: the cores)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    os.environ.pop("DATALOOP_WORKERS", None)
    n = args.workers or worker_count()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = [
            write_synthetic_drive(
                work / f"d{k}.mcap",
                vehicle="bench",
                drive=f"d{k}",
                start_ns=time.time_ns(),
                duration_s=args.minutes * 60,
                seed=k,
            )
            for k in range(args.drives)
        ]
        run_hour(paths[:1], work / "warm-1", 1)  # imports and first-call costs, in process
        start = time.perf_counter()
        run_hour(paths[:2], work / "warm-n", n)  # the fork server and its preloads
        warm = time.perf_counter() - start
        runs: dict[int, list[dict[str, float]]] = {1: [], n: []}
        for i in range(args.repeats):
            for workers in (1, n):
                runs[workers].append(run_hour(paths, work / f"run-{i}-{workers}", workers))
        mb = sum(p.stat().st_size for p in paths) / 1e6
    print(
        f"{args.drives} drives of {args.minutes:g} min ({mb:.1f} MB), 1 worker vs {n}, "
        f"median of {args.repeats}; {len(os.sched_getaffinity(0))} cores here"
    )
    print(f"  pool start-up (fork server and preloads, once per process) + 2 drives: {warm:.1f} s")
    total = {1: 0.0, n: 0.0}
    for stage in STAGES:
        rate = {}
        for workers in (1, n):
            s = statistics.median(r[stage] for r in runs[workers])
            total[workers] += s
            rate[workers] = args.drives / s
        print(
            f"  {stage:<11} 1 worker {rate[1]:6.2f} drives/s   {n} workers {rate[n]:6.2f} drives/s"
            f"   ratio {rate[n] / rate[1]:5.2f}x"
        )
    print(
        f"  {'hour':<11} 1 worker {args.drives / total[1]:6.2f} drives/s   {n} workers "
        f"{args.drives / total[n]:6.2f} drives/s   ratio {total[1] / total[n]:5.2f}x"
        + ("   (ingest goal on 2 cores: >= 1.70x)" if n == 2 else "")
    )


if __name__ == "__main__":
    main()

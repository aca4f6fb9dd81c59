"""An arrival hour's per-drive work on 1 worker against N, in the same run (DATALOOP_WORKERS).

    python benchmarks/hour_pool.py [--drives 8] [--minutes 1] [--workers N] [--repeats 3]
                                   [--ingest-only]

Each repeat uploads the same drives to a fresh local lake and runs the hour's stages as the
hourly assets do (ingest, quality, compliance, labels), timing each, once with
``DATALOOP_WORKERS=1`` (in process) and once with N (default: the cores this process may run
on). Prints drives/s per stage and the ratio N/1 (issue #23's goal for ingest on 2 cores:
>= 1.7x); ``--ingest-only`` times ingest alone. Before timing, one small hour on N workers
starts the fork server (its preloads are paid once per process: printed as the pool's
start-up cost). The machine's load average is printed too: other work skews every ratio, so
each stage also prints its CPU seconds per drive (this process and its workers, from /proc)
on both paths, and the ratio N workers would reach on N idle cores at that cost (a bound
for stages that run on one core in process, as ingest, quality and labels do; OpenCV already
spreads compliance's in-process path over the cores).
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


def cpu_seconds() -> float:
    """CPU seconds used so far by this process and every process under it (the fork server
    and its workers), from /proc: on a shared machine, what the work cost, whatever the load."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(d.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    mine, todo = set(), [os.getpid()]
    while todo:
        pid = todo.pop()
        mine.add(pid)
        todo += [p for p, (ppid, _) in stats.items() if ppid == pid and p not in mine]
    return sum(stats[p][1] for p in mine if p in stats)


def run_hour(
    paths: list[Path], root: Path, workers: int, stages: tuple[str, ...] = STAGES
) -> dict[str, float]:
    """Seconds per stage over the drives' arrival hours (usually one), on ``workers``; the
    stages up to the last of ``stages`` (each needs the one before)."""
    os.environ["DATALOOP_WORKERS"] = str(workers)
    store, hours = hour_of(paths, root)
    suites, detector = load_suites(), HaarDetector()
    params = load_params(rules_dir() / "labeling" / "offboard.yaml")
    took: dict[str, float] = defaultdict(float)

    def timed(stage: str, step, *args) -> None:
        start, cpu = time.perf_counter(), cpu_seconds()
        step(store, *args)
        took[stage] += time.perf_counter() - start
        took[f"{stage} cpu"] += cpu_seconds() - cpu

    for hour in hours:
        timed("ingest", ingest_hour, hour)
        if stages == ("ingest",):
            continue
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
    ap.add_argument("--ingest-only", action="store_true", help="time ingest alone")
    args = ap.parse_args()
    stages = ("ingest",) if args.ingest_only else STAGES
    os.environ.pop("DATALOOP_WORKERS", None)
    n = args.workers or worker_count()
    load = os.getloadavg()
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
                root = work / f"run-{i}-{workers}"
                runs[workers].append(run_hour(paths, root, workers, stages))
        mb = sum(p.stat().st_size for p in paths) / 1e6
    print(
        f"{args.drives} drives of {args.minutes:g} min ({mb:.1f} MB), 1 worker vs {n}, "
        f"median of {args.repeats}; {len(os.sched_getaffinity(0))} cores here, load average "
        f"{load[0]:.1f} before, {os.getloadavg()[0]:.1f} after (other work on the machine)"
    )
    print(f"  pool start-up (fork server and preloads, once per process) + 2 drives: {warm:.1f} s")
    total = {1: 0.0, n: 0.0}
    for stage in stages:
        rate, cpu = {}, {}
        for workers in (1, n):
            s = statistics.median(r[stage] for r in runs[workers])
            total[workers] += s
            rate[workers] = args.drives / s
            cpu[workers] = statistics.median(r[f"{stage} cpu"] for r in runs[workers])
        print(
            f"  {stage:<11} 1 worker {rate[1]:6.2f} drives/s   {n} workers {rate[n]:6.2f} drives/s"
            f"   ratio {rate[n] / rate[1]:5.2f}x   CPU s/drive {cpu[1] / args.drives:.3f} vs "
            f"{cpu[n] / args.drives:.3f} (all {n} workers' CPU-bound ideal on idle cores: "
            f"{n * cpu[1] / cpu[n]:.2f}x)"
        )
    if len(stages) > 1:
        print(
            f"  {'hour':<11} 1 worker {args.drives / total[1]:6.2f} drives/s   {n} workers "
            f"{args.drives / total[n]:6.2f} drives/s   ratio {total[1] / total[n]:5.2f}x"
        )
    if n == 2:
        print("  (issue #23's goal for ingest on 2 cores: >= 1.70x)")


if __name__ == "__main__":
    main()

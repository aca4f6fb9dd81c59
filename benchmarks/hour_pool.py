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


def measure(
    drives: int = 8,
    minutes: float = 1.0,
    workers: int | None = None,
    repeats: int = 3,
    stages: tuple[str, ...] = STAGES,
) -> dict:
    """Per stage: drives/s on 1 worker and on N, their ratio and CPU seconds per drive (the
    median of ``repeats``); the whole hour's ratio; the pool's start-up; the load average."""
    os.environ.pop("DATALOOP_WORKERS", None)
    n = workers or worker_count()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = [
            write_synthetic_drive(
                work / f"d{k}.mcap",
                vehicle="bench",
                drive=f"d{k}",
                start_ns=time.time_ns(),
                duration_s=minutes * 60,
                seed=k,
            )
            for k in range(drives)
        ]
        run_hour(paths[:1], work / "warm-1", 1)  # imports and first-call costs, in process
        start = time.perf_counter()
        run_hour(paths[:2], work / "warm-n", n)  # the fork server and its preloads
        warm = time.perf_counter() - start
        runs: dict[int, list[dict[str, float]]] = {1: [], n: []}
        for i in range(repeats):
            for w in (1, n):
                runs[w].append(run_hour(paths, work / f"run-{i}-{w}", w, stages))
        mb = sum(p.stat().st_size for p in paths) / 1e6
    out: dict = {
        "drives": drives,
        "minutes": minutes,
        "mb": mb,
        "workers": n,
        "repeats": repeats,
        "cores": len(os.sched_getaffinity(0)),
        "load_before": load[0],
        "load_after": os.getloadavg()[0],
        "warm_s": warm,
        "stages": {},
    }
    total = {1: 0.0, n: 0.0}
    for stage in stages:
        took = {w: statistics.median(r[stage] for r in runs[w]) for w in (1, n)}
        cpu = {w: statistics.median(r[f"{stage} cpu"] for r in runs[w]) for w in (1, n)}
        for w in (1, n):
            total[w] += took[w]
        out["stages"][stage] = {
            "rate_1": drives / took[1],
            "rate_n": drives / took[n],
            "ratio": took[1] / took[n],
            "cpu_1": cpu[1] / drives,
            "cpu_n": cpu[n] / drives,
            "ideal": n * cpu[1] / cpu[n],
        }
    out["hour"] = {"rate_1": drives / total[1], "rate_n": drives / total[n]}
    out["hour"]["ratio"] = total[1] / total[n]
    return out


def report(r: dict) -> None:
    n = r["workers"]
    print(
        f"{r['drives']} drives of {r['minutes']:g} min ({r['mb']:.1f} MB), 1 worker vs {n}, "
        f"median of {r['repeats']}; {r['cores']} cores here, load average "
        f"{r['load_before']:.1f} before, {r['load_after']:.1f} after (other work on the machine)"
    )
    warm = r["warm_s"]
    print(f"  pool start-up (fork server and preloads, once per process) + 2 drives: {warm:.1f} s")
    for stage, m in r["stages"].items():
        print(
            f"  {stage:<11} 1 worker {m['rate_1']:6.2f} drives/s   {n} workers "
            f"{m['rate_n']:6.2f} drives/s   ratio {m['ratio']:5.2f}x   CPU s/drive "
            f"{m['cpu_1']:.3f} vs {m['cpu_n']:.3f} (all {n} workers' CPU-bound ideal on idle "
            f"cores: {m['ideal']:.2f}x)"
        )
    if len(r["stages"]) > 1:
        h = r["hour"]
        print(
            f"  {'hour':<11} 1 worker {h['rate_1']:6.2f} drives/s   {n} workers "
            f"{h['rate_n']:6.2f} drives/s   ratio {h['ratio']:5.2f}x"
        )
    if n == 2:
        print("  (issue #23's goal for ingest on 2 cores: >= 1.70x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--drives", type=int, default=8)
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--workers", type=int, default=None, help="N (default: the cores)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ingest-only", action="store_true", help="time ingest alone")
    args = ap.parse_args()
    stages = ("ingest",) if args.ingest_only else STAGES
    report(measure(args.drives, args.minutes, args.workers, args.repeats, stages))


if __name__ == "__main__":
    main()

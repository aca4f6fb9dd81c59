"""One arrival hour's ``ingest_job`` (ingest, quality, compliance) on two dagster-celery
workers against the in-process executor, from the same uploads, in the same run.

    python benchmarks/celery_hour.py [--vehicles 4] [--minutes 1]

Starts Debian's ``redis-server`` as the broker and two workers (``dataloop infra
celery-worker``, one step at a time each, ``DATALOOP_WORKERS=1``), and times ``dagster job
execute`` of the hour: in process on one core (the baseline), in process on every core
(``DATALOOP_WORKERS`` unset: the worker pool), and fanned out by vehicle into
``--vehicles`` shards over the two Celery workers. Prints the seconds and each ratio to the
baseline, and checks the three runs leave the same tables. On one 2-core machine the Celery
workers share the cores the in-process pool uses, so the ratio shows the executor's cost;
its gain is workers on more machines.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.helpers import init_instance, start_redis, stop_group  # noqa: E402

BIN = Path(sys.executable).parent


def _uploads(lake: Path, work: Path, vehicles: int, minutes: float) -> str:
    """One drive per vehicle, all arriving in one hour; returns the hour."""
    from dataloop.fleet.synthetic import write_synthetic_drive
    from dataloop.fleet.uploader import upload_drive
    from dataloop.lake.local import LocalStore

    store = LocalStore(lake)
    manifests = []
    for k in range(vehicles):
        vehicle = f"veh-{k:02d}"
        log = write_synthetic_drive(
            work / f"{vehicle}.mcap",
            vehicle=vehicle,
            drive=f"d-{vehicle}",
            start_ns=time.time_ns(),
            duration_s=minutes * 60,
            seed=k,
        )
        manifests.append(upload_drive(store, log, vehicle=vehicle).manifest_key)
    first = (lake / manifests[0]).stat().st_mtime_ns
    for key in manifests:  # one arrival hour (a local lake reads arrival from the file time)
        os.utime(lake / key, ns=(first, first))
    return store.head(manifests[0]).last_modified.strftime("%Y-%m-%d-%H:00")


def _execute(env: dict[str, str], hour: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        [str(BIN / "dagster"), "job", "execute", "-m", "dataloop.definitions", "-j",
         "ingest_job", "--tags", json.dumps({"dagster/partition": hour})],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    if proc.returncode:
        raise SystemExit(f"the hour failed:\n{proc.stderr[-4000:]}")
    return time.perf_counter() - start


def _env(home: Path, lake: Path, **extra: str) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    init_instance(home)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATALOOP_")}
    return {**env, "DAGSTER_HOME": str(home), "DATALOOP_LAKE": str(lake), **extra}


def _tables(lake: Path) -> list[str]:
    return sorted(p.relative_to(lake).as_posix() for p in (lake / "tables").rglob("*.parquet"))


def measure(vehicles: int = 4, minutes: float = 1.0) -> dict:
    """Seconds of the hour in process on one core, on the worker pool, and on Celery; and
    whether the three left the same tables."""
    from celery import Celery

    with tempfile.TemporaryDirectory(prefix="dataloop-celery-bench-") as tmp:
        work = Path(tmp)
        lakes = {name: work / f"lake-{name}" for name in ("one", "pool", "celery")}
        hour = _uploads(lakes["one"], work, vehicles, minutes)
        for name in ("pool", "celery"):
            shutil.copytree(lakes["one"], lakes[name])  # the same uploads and arrival times
        seconds = {
            "one": _execute(_env(work / "home-one", lakes["one"], DATALOOP_WORKERS="1"), hour),
            "pool": _execute(_env(work / "home-pool", lakes["pool"]), hour),
        }
        broker, redis = start_redis(work)
        env = _env(
            work / "home-celery", lakes["celery"], DATALOOP_EXECUTOR="celery",
            DATALOOP_CELERY_BROKER=broker, DATALOOP_HOUR_SHARDS=str(vehicles),
            DATALOOP_WORKERS="1",
        )  # fmt: skip
        workers = [
            subprocess.Popen(
                [str(BIN / "dataloop"), "infra", "celery-worker", "--name", name],
                env=env,
                cwd=work,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
            for name in ("w1", "w2")
        ]
        try:
            app = Celery(broker=broker, backend=broker)
            deadline, ready = time.monotonic() + 120, set()
            while len(ready) < 2:
                if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                    raise SystemExit(f"the Celery workers did not start (ready: {ready})")
                ready = {n.partition("@")[0] for r in app.control.ping(timeout=1) for n in r}
            seconds["celery"] = _execute(env, hour)
        finally:
            for w in workers:
                stop_group(w, grace=60)
            stop_group(redis, grace=10)
        same = _tables(lakes["one"]) == _tables(lakes["pool"]) == _tables(lakes["celery"])
    return {"vehicles": vehicles, "minutes": minutes, "seconds": seconds, "same_tables": same}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vehicles", type=int, default=4)
    ap.add_argument("--minutes", type=float, default=1.0)
    args = ap.parse_args()
    r = measure(args.vehicles, args.minutes)
    seconds = r["seconds"]
    labels = {
        "one": "in process, 1 core (baseline)",
        "pool": f"in process, {len(os.sched_getaffinity(0))} worker processes",
        "celery": f"Celery, 2 workers, {args.vehicles} shards",
    }
    print(f"ingest_job over one hour of {args.vehicles} vehicles x {args.minutes:g} min")
    for name, label in labels.items():
        ratio = seconds["one"] / seconds[name]
        print(f"  {label:<36} {seconds[name]:7.1f} s   {ratio:5.2f}x")
    print(f"  the same tables from all three: {r['same_tables']}")
    if not r["same_tables"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

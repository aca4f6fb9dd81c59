"""The Celery executor for real: Debian's redis-server as the broker, two dagster-celery workers
started by ``dataloop infra celery-worker``, and ``ingest_job`` with its arrival hour fanned
out by vehicle (``DATALOOP_HOUR_SHARDS``). The hour's steps land on both workers, and the lake
they leave equals the one the in-process executor leaves from the same uploads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dataloop.fleet.uploader import upload_drive
from dataloop.lake.layout import parse_raw_key
from dataloop.lake.local import LocalStore
from tests.helpers import init_instance, start_redis, stop_group

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
VEHICLES = ("veh-a", "veh-b", "veh-c", "veh-d")
SHARDS = 4
VOLATILE = ("processed_at", "arrived_at", "started_at", "finished_at", "written_at")
"""Fields of lake records that say when, not what: they differ between any two runs."""


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway Redis on loopback for the module (the broker)."""
    url, proc = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    stop_group(proc, grace=30)


def _upload_hour(store: LocalStore, make_log) -> str:
    """One upload per vehicle, all arriving in one hour (their manifests' times are set to
    the first's, as a local lake reads arrival from the file's time)."""
    manifests = [
        upload_drive(store, make_log(vehicle=v, drive=f"d-{v}", seconds=2.0, seed=k), vehicle=v)
        for k, v in enumerate(VEHICLES)
    ]
    first = store.root / manifests[0].manifest_key
    for m in manifests:
        os.utime(store.root / m.manifest_key, ns=(first.stat().st_mtime_ns,) * 2)
    return store.head(manifests[0].manifest_key).last_modified.strftime("%Y-%m-%d-%H:00")


def _logs(folder: Path, names: tuple[str, ...]) -> str:
    """The tail of each worker's output, for a failure message."""
    return "\n".join(f"{n}: {(folder / f'{n}.log').read_text()[-2000:]}" for n in names)


def _execute(env: dict[str, str], hour: str, context: Callable[[], str] = str) -> None:
    proc = subprocess.run(
        [str(BIN / "dagster"), "job", "execute", "-m", "dataloop.definitions", "-j",
         "ingest_job", "--tags", json.dumps({"dagster/partition": hour})],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, f"{proc.stderr[-4000:]}\n{context()}"


def _lake(root: Path) -> dict[str, object]:
    """Every object of a lake by key: JSON as data without its times, the rest as bytes."""

    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items() if k not in VOLATILE}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    objects = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        key = path.relative_to(root).as_posix()
        if key.startswith("."):
            continue  # the local store's own bookkeeping (locks, temporary files)
        data = path.read_bytes()
        objects[key] = plain(json.loads(data)) if key.endswith(".json") else data
    return objects


def _env(home: Path, lake: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATALOOP_RULES", "DATALOOP_EXECUTOR")}
    return {**env, "DAGSTER_HOME": str(home), "DATALOOP_LAKE": str(lake), **extra}


def test_an_hour_fans_out_over_two_celery_workers_and_leaves_the_in_process_lake(
    tmp_path, make_log, redis_url
):
    import dagster as dg
    from celery import Celery
    from dagster import DagsterEventType, DagsterRunStatus

    serial, spread = tmp_path / "serial", tmp_path / "celery"
    hour = _upload_hour(LocalStore(serial), make_log)
    shutil.copytree(serial, spread)  # the same uploads, at the same arrival times
    assert len({parse_raw_key(k.key).vehicle for k in LocalStore(spread).list("raw/")}) == 4
    for home in (tmp_path / "home-serial", tmp_path / "home-celery"):
        home.mkdir()
    _execute(_env(tmp_path / "home-serial", serial), hour)

    home = tmp_path / "home-celery"
    env = _env(
        home, spread, DATALOOP_EXECUTOR="celery", DATALOOP_CELERY_BROKER=redis_url,
        DATALOOP_HOUR_SHARDS=str(SHARDS),
    )  # fmt: skip
    init_instance(home)  # before the workers and the run, who would all create it at once
    names = ("w1", "w2")
    logs = [(tmp_path / f"{name}.log").open("w") for name in names]
    workers = [
        subprocess.Popen(
            [str(BIN / "dataloop"), "infra", "celery-worker", "--name", name],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        for name, log in zip(names, logs, strict=True)
    ]
    try:
        app = Celery(broker=redis_url, backend=redis_url)
        deadline, ready = time.monotonic() + 120, set()
        while len(ready) < 2:  # both workers answer before any step is sent
            assert time.monotonic() < deadline, f"celery workers not ready: {ready}"
            assert all(w.poll() is None for w in workers), _logs(tmp_path, names)
            ready = {n.partition("@")[0] for r in app.control.ping(timeout=1) for n in r}
        _execute(env, hour, lambda: _logs(tmp_path, names))
    finally:
        for w, log in zip(workers, logs, strict=True):
            stop_group(w, grace=60)
            log.close()

    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        assert run.status == DagsterRunStatus.SUCCESS
        ran_on = {
            e.step_key: e.dagster_event.engine_event_data.metadata["Celery worker"].value
            for e in instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT)
            if "Celery worker" in e.dagster_event.engine_event_data.metadata
        }
    shards = sorted(k for k in ran_on if k.startswith("decoded_drives.ingest_shard["))
    assert len(shards) == SHARDS, ran_on  # one vehicle per shard
    assert {"drive_verdicts", "approved_drives", "compliant_drives"} <= set(ran_on)
    assert {w.partition("@")[0] for w in ran_on.values()} == set(names), ran_on

    a, b = _lake(serial), _lake(spread)
    assert sorted(a) == sorted(b)
    assert [k for k in a if a[k] != b[k]] == []
    assert any(k.startswith("tables/") for k in a) and any(k.startswith("ledger/") for k in a)

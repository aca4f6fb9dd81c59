"""Dagster storage on a real PostgreSQL server (Debian's postgresql, started here in a temporary
folder): concurrent arrival-hour runs of ingest and quality, each in its own process as run
workers are in production, against the instance that ``infra/dagster.yaml`` describes."""

from __future__ import annotations

import glob
import multiprocessing as mp
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import free_port

REPO = Path(__file__).resolve().parents[1]
HOURS = 4
DRIVES_PER_HOUR = 2
SECONDS = 2.0  # per drive log
DECODE_SLOTS = 2  # fewer than the concurrent runs: the pool's slots are contended in Postgres
LOCK_WORDS = ("deadlock", "lock timeout", "could not serialize", "database is locked")


def _pg_bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    candidates = [found] if found else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(candidates[0]).resolve().parent if candidates else None


@pytest.fixture(scope="module")
def postgres() -> Iterator[dict[str, str]]:
    """A PostgreSQL server on a free loopback port with password auth; yields the
    DAGSTER_POSTGRES_* variables infra/dagster.yaml reads. Stopped and deleted at teardown."""
    bindir = _pg_bindir()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("no PostgreSQL server binaries: .ci/run installs Debian's postgresql")
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql)")
    # The server refuses to run as root; as root, run it as Debian's postgres user.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="dataloop-pg-"))
    password = secrets.token_hex(12)
    (root / "pw").write_text(password)
    if as_user:
        for path in (root, root / "pw"):
            shutil.chown(path, "postgres")
    port = free_port()

    def pg(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, timeout=120)

    pg(str(bindir / "initdb"), "-D", str(root / "data"), "-U", "dagster", "--pwfile",
       str(root / "pw"), "--auth=scram-sha-256", "-E", "UTF8", "--no-sync")  # fmt: skip
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200"
    pg(str(bindir / "pg_ctl"), "-D", str(root / "data"), "-l", str(root / "log"), "-w",
       "-t", "60", "-o", options, "start")  # fmt: skip
    try:
        import psycopg2

        con = psycopg2.connect(
            host="127.0.0.1", port=port, user="dagster", password=password, dbname="postgres"
        )
        con.autocommit = True
        con.cursor().execute("CREATE DATABASE dagster")
        con.cursor().execute("CREATE DATABASE stack")  # for the compose-flow test
        con.close()
        yield {
            "DAGSTER_POSTGRES_HOST": "127.0.0.1",
            "DAGSTER_POSTGRES_PORT": str(port),
            "DAGSTER_POSTGRES_USER": "dagster",
            "DAGSTER_POSTGRES_PASSWORD": password,
            "DAGSTER_POSTGRES_DB": "dagster",
        }
    finally:
        pg(str(bindir / "pg_ctl"), "-D", str(root / "data"), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _run_hour(home: str, lake: str, hour: str, barrier, results) -> None:
    """One run worker: materialize ingest and quality for one hour on the shared instance."""
    import dagster as dg

    from dataloop.defs.ingest.assets import decoded_drives, raw_drive_logs
    from dataloop.defs.quality.assets import approved_drives, drive_verdicts, hour_fit_for_use
    from dataloop.defs.quality.compliance import compliant_drives
    from dataloop.defs.resources import LakeResource

    try:
        with dg.DagsterInstance.from_config(home) as instance:
            barrier.wait(timeout=120)
            started = time.time()
            result = dg.materialize(
                [raw_drive_logs, decoded_drives, drive_verdicts, hour_fit_for_use]
                + [approved_drives, compliant_drives],
                partition_key=hour,
                resources={"lake": LakeResource(url=lake)},
                instance=instance,
                selection=[decoded_drives, drive_verdicts, approved_drives, compliant_drives],
                raise_on_error=False,
            )
            results.put(
                {
                    "hour": hour,
                    "run_id": result.run_id,
                    "success": result.success,
                    "start": started,
                    "end": time.time(),
                }
            )
    except BaseException as e:  # noqa: BLE001 - reported to the test, which fails on it
        results.put({"hour": hour, "error": repr(e)})


def _spawned(target, worker_args: list[tuple]) -> list[dict]:
    """One spawned process per ``worker_args`` entry, as run workers are: each gets its args
    plus a shared barrier and result queue; returns their reports (none may be an error)."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(len(worker_args)), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, barrier, results)) for a in worker_args]
    for proc in procs:
        proc.start()
    reports = [results.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert [r for r in reports if "error" in r] == []
    return reports


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


def _claimer(home: str, pool: str, worker: int, rounds: int, barrier, results) -> None:
    """One run worker's slot traffic, as the executor makes it: claim (polling while blocked),
    hold, free. Reports the intervals it held a slot, each inside the claim and the free."""
    import dagster as dg

    held: list[tuple[float, float]] = []
    try:
        with dg.DagsterInstance.from_config(home) as instance:
            storage = instance.event_log_storage
            for r in range(rounds):
                run_id = f"claimer-{worker}-{r}"
                barrier.wait(timeout=120)
                while not storage.claim_concurrency_slot(pool, run_id, "decoded_drives").is_claimed:
                    time.sleep(0.005)
                start = time.time()
                time.sleep(0.3)
                held.append((start, time.time()))
                storage.free_concurrency_slot_for_step(run_id, "decoded_drives")
        results.put({"worker": worker, "held": held})
    except BaseException as e:  # noqa: BLE001 - reported to the test, which fails on it
        results.put({"worker": worker, "error": repr(e)})


def test_racing_slot_claims_never_exceed_the_pool(postgres, tmp_path, monkeypatch):
    """The root of #19, measured on the slots themselves: six workers claim a 2-slot pool at
    the same instant, round after round. Dagster-postgres's own storage hands one slot row to
    two claimers (its SELECT ... FOR UPDATE runs in autocommit, so the row lock is gone before
    the UPDATE); infra/dagster.yaml's event log storage serialises the claims of slot rows."""
    import dagster as dg
    from dagster_postgres import PostgresEventLogStorage

    from dataloop.infra.event_log import PoolSafePostgresEventLogStorage

    # The override only works while Dagster's semaphore step keeps its name.
    claim = "_claim_concurrency_slot"
    assert (
        getattr(PostgresEventLogStorage, claim) is not vars(PoolSafePostgresEventLogStorage)[claim]
    )

    for name, value in postgres.items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "infra" / "dagster.yaml", home / "dagster.yaml")
    pool, workers, rounds = "claims", 6, 6
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.event_log_storage, PoolSafePostgresEventLogStorage)
        instance.event_log_storage.set_concurrency_slots(pool, DECODE_SLOTS)

    reports = _spawned(_claimer, [(str(home), pool, w, rounds) for w in range(workers)])
    held = [interval for r in reports for interval in r["held"]]
    assert len(held) == workers * rounds
    assert _max_overlap(held) == DECODE_SLOTS  # the pool was full, and never more than full
    with dg.DagsterInstance.from_config(str(home)) as instance:
        info = instance.event_log_storage.get_concurrency_info(pool)
        assert info.slot_count == DECODE_SLOTS and info.active_slot_count == 0
        assert info.pending_step_count == 0


def test_concurrent_hour_runs_on_postgres(postgres, tmp_path, make_log, monkeypatch):
    import dagster as dg
    from dagster import DagsterEventType, DagsterRunStatus

    from dataloop.fleet.uploader import upload_drive
    from dataloop.infra.pools import POOLS, apply_pools
    from dataloop.lake.layout import approved_key, hour_record_key
    from dataloop.lake.local import LocalStore
    from dataloop.lake.pointers import read_json

    for name, value in postgres.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DATALOOP_RULES", raising=False)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "infra" / "dagster.yaml", home / "dagster.yaml")
    store = LocalStore(tmp_path / "lake")

    now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    expected: dict[str, set[tuple[str, str]]] = {}
    for i in range(HOURS):
        at = now - timedelta(hours=HOURS + 1 - i)
        hour = at.strftime("%Y-%m-%d-%H:00")
        expected[hour] = set()
        for j in range(DRIVES_PER_HOUR):
            vehicle, drive = f"veh-{j}", f"h{i}-d{j}"
            log = make_log(vehicle=vehicle, drive=drive, seconds=SECONDS, seed=10 * i + j)
            up = upload_drive(store, log, vehicle=vehicle, now=at)
            os.utime(store.path(up.manifest_key), (at.timestamp(), at.timestamp()))
            expected[hour].add((vehicle, drive))

    # The schema is created once, as `dagster instance migrate` does before a deployment.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PoolSafePostgresEventLogStorage"
        # Every pool is stored before runs start, as `dataloop infra pools` does at deploy
        # time: left to each run, concurrent first claims of a pool race to insert its
        # default limit, and on Postgres the loser's transaction aborts (a failed run).
        pools = {**POOLS, "decode": DECODE_SLOTS}
        assert apply_pools(instance, pools) == pools
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
        assert {"key": "dagster/backfill", "limit": 4} in limits

    reports = _spawned(_run_hour, [(str(home), str(store.root), h) for h in expected])
    assert all(r["success"] for r in reports), reports
    # The runs were in progress at the same time (each waited at the barrier first).
    assert max(r["start"] for r in reports) < min(r["end"] for r in reports)

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert sorted(r.tags["dagster/partition"] for r in runs) == sorted(expected)
        assert {r.status for r in runs} == {DagsterRunStatus.SUCCESS}
        for name in ("decoded_drives", "drive_verdicts", "approved_drives", "compliant_drives"):
            assert instance.get_materialized_partitions(dg.AssetKey(name)) == set(expected), name
        decoding: list[tuple[float, float]] = []
        for run in runs:
            logs = instance.all_logs(run.run_id)
            problems = [
                e.message
                for e in logs
                if (e.dagster_event and e.dagster_event.is_failure) or e.level >= 40
            ]
            assert problems == [], problems
            assert not [e for e in logs if any(w in e.message.lower() for w in LOCK_WORDS)]
            checks = [
                e.dagster_event.event_specific_data
                for e in logs
                if e.dagster_event_type == DagsterEventType.ASSET_CHECK_EVALUATION
            ]
            assert [c.passed for c in checks] == [True]
            steps = {
                e.dagster_event_type: e.timestamp
                for e in logs
                if e.step_key == "decoded_drives.ingest_shard[shard_0]"  # the decode pool's step
                and e.dagster_event_type
                in (DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS)
            }
            decoding.append(
                (steps[DagsterEventType.STEP_START], steps[DagsterEventType.STEP_SUCCESS])
            )
        # The decode pool's slots, claimed and freed in Postgres, held at most DECODE_SLOTS.
        assert _max_overlap(decoding) <= DECODE_SLOTS
        info = instance.event_log_storage.get_concurrency_info("decode")
        assert info.slot_count == DECODE_SLOTS and info.active_slot_count == 0

    for hour, drives in expected.items():
        record = read_json(store, hour_record_key(hour))
        assert {(d["vehicle"], d["drive"]) for d in record["drives"]} == drives
        assert {d["status"] for d in record["drives"]} == {"ingested"}
        approved = read_json(store, approved_key(hour))
        assert {tuple(d) for d in approved["drives"]} == drives


def test_compose_flow_sensor_queue_code_server_run_worker(
    postgres, tmp_path, make_log, monkeypatch
):
    """What the compose stack does, without Docker: the code location's gRPC server started
    with compose's command, the workspace file the webserver and daemon read, the sensor and
    run-queue daemon iterations, and a run worker the server starts (DefaultRunLauncher)."""
    import logging
    import sys

    import dagster as dg
    import yaml
    from dagster import DagsterRunStatus, RunsFilter
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget
    from dagster._daemon import sensor as sensor_daemon
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
        QueuedRunCoordinatorDaemon,
    )
    from dagster._grpc.client import DagsterGrpcClient

    from dataloop.fleet.uploader import upload_drive
    from dataloop.infra.pools import apply_pools
    from dataloop.lake.layout import hour_record_key
    from dataloop.lake.local import LocalStore
    from dataloop.lake.pointers import read_json

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "infra" / "dagster.yaml", home / "dagster.yaml")
    store = LocalStore(tmp_path / "lake")
    for name, value in {**postgres, "DAGSTER_POSTGRES_DB": "stack"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DATALOOP_LAKE", str(store.root))
    monkeypatch.delenv("DATALOOP_RULES", raising=False)
    upload_drive(store, make_log(vehicle="veh-9", drive="stack", seconds=SECONDS), vehicle="veh-9")

    compose = yaml.safe_load((REPO / "infra" / "docker-compose.yml").read_text())
    command = compose["services"]["code-location"]["command"].split()
    port = free_port()
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(port)
    workspace = yaml.safe_load((REPO / "infra" / "workspace.yaml").read_text())
    workspace["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=port)
    (home / "workspace.yaml").write_text(yaml.safe_dump(workspace))

    with dg.DagsterInstance.get() as instance:
        apply_pools(instance)  # compose's dagster-init
    bindir = Path(sys.executable).parent
    server = subprocess.Popen([str(bindir / command[0]), *command[1:]], cwd=REPO)
    try:
        client = DagsterGrpcClient(port=port, host="127.0.0.1")
        deadline = time.time() + 120
        while True:
            try:
                client.ping("")
                break
            except Exception:  # noqa: BLE001 - not serving yet
                assert time.time() < deadline and server.poll() is None, "code server never up"
                time.sleep(0.5)

        target = WorkspaceFileTarget(paths=[str(home / "workspace.yaml")])
        with (
            dg.DagsterInstance.get() as instance,
            WorkspaceProcessContext(instance, target) as ctx,
        ):
            (entry,) = ctx.create_request_context().get_code_location_entries().values()
            assert entry.load_error is None and entry.origin.location_name == "dataloop"
            log = logging.getLogger("test.stack")
            list(
                sensor_daemon.execute_sensor_iteration(
                    ctx, log, threadpool_executor=None, submit_threadpool_executor=None
                )
            )
            (queued,) = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.QUEUED]))
            assert queued.job_name == "ingest_job"
            list(QueuedRunCoordinatorDaemon(interval_seconds=1).run_iteration(ctx))
            deadline = time.time() + 240
            while (run := instance.get_run_by_id(queued.run_id)).status not in (
                DagsterRunStatus.SUCCESS,
                DagsterRunStatus.FAILURE,
            ):
                assert time.time() < deadline, f"run still {run.status}"
                time.sleep(1)
            assert run.status == DagsterRunStatus.SUCCESS
            hour = run.tags["dagster/partition"]
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:  # a loaded machine: stop it, the test is about the run
            server.kill()
            server.wait()
    record = read_json(store, hour_record_key(hour))
    assert [(d["vehicle"], d["drive"], d["status"]) for d in record["drives"]] == [
        ("veh-9", "stack", "ingested")
    ]

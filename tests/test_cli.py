"""The ``dataloop`` command as a user runs it: real processes, a real Dagster instance."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import daemon_beside

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture
def env(tmp_path):
    shutil.copy(REPO / "workspace.yaml", tmp_path / "workspace.yaml")
    (tmp_path / "dagster").mkdir()
    return {
        **os.environ,
        "DATALOOP_LAKE": str(tmp_path / "lake"),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "PYTHONPATH": str(REPO),
    }


def run(env, *args, check=True):
    proc = subprocess.run(
        [str(BIN / "dataloop"), *args],
        env=env,
        cwd=Path(env["DAGSTER_HOME"]).parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def test_upload_tick_drives(env, make_log):
    log = make_log(vehicle="veh-7", drive="d-1")
    up = json.loads(run(env, "fleet", "upload", str(log), "--vehicle", "veh-7", "--json").stdout)
    assert up["status"] == "uploaded"

    first = json.loads(run(env, "tick", "--json").stdout)
    # ingest, then (the next rounds of the same tick) curation of the day and the dataset
    assert [(r["what"], r["status"]) for r in first["runs"]] == [
        ("ingest_job", "SUCCESS"),
        ("clip_embeddings+scenario_index", "SUCCESS"),
        ("training_dataset", "SUCCESS"),
    ]
    assert first["runs"][0]["run_key"].startswith("ingest-")

    second = json.loads(run(env, "tick", "--json").stdout)
    assert second["runs"] == []

    drives = json.loads(run(env, "drives", "--json").stdout)
    assert [(d["vehicle"], d["drive"], d["stage"], d["status"]) for d in drives] == [
        ("veh-7", "d-1", "quality", "pass")
    ]
    assert "veh-7" in run(env, "drives").stdout


def test_tick_shares_cursor_and_run_keys_with_the_daemon(env, make_log):
    log = make_log(vehicle="veh-7", drive="d-2")
    run(env, "fleet", "upload", str(log), "--vehicle", "veh-7")
    runs = json.loads(run(env, "tick", "--json").stdout)["runs"]
    assert [r["what"] for r in runs].count("ingest_job") == 1

    # The daemon's view: the workspace.yaml location, loaded as `dagster dev` loads it.
    cursor = subprocess.run(
        [str(BIN / "python"), "-c", _READ_CURSOR],
        env=env,
        cwd=Path(env["DAGSTER_HOME"]).parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cursor.returncode == 0, cursor.stderr
    line = next(x for x in cursor.stdout.splitlines() if x.startswith("CURSOR="))
    seen = json.loads(line.removeprefix("CURSOR="))["seen"]
    assert any(k.endswith("veh-7/d-2.manifest.json") for k in seen)

    # Drop the cursor with Dagster's own CLI: the sensor re-plans the same run, and the
    # run key (recorded by the daemon code path) stops a second run.
    subprocess.run(
        [
            str(BIN / "dagster"),
            "sensor",
            "cursor",
            "raw_upload_sensor",
            "--delete",
            "-w",
            "workspace.yaml",
        ],
        env=env,
        cwd=Path(env["DAGSTER_HOME"]).parent,
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert json.loads(run(env, "tick", "--json").stdout)["runs"] == []


def test_tick_refuses_while_a_daemon_serves_the_instance(env):
    """`dagster dev`'s daemon (here `dagster-daemon run` over the repository's workspace.yaml)
    runs the sensors and launches the queued runs; a tick beside it would start a second
    daemon doing the same: it refuses, and says why."""
    daemon = [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"]
    with daemon_beside(daemon, env, Path(env["DAGSTER_HOME"]).parent):
        proc = run(env, "tick", check=False)
        unwrapped = "".join(proc.stderr.split())  # rich wraps lines, inside words too
        assert proc.returncode != 0 and proc.stdout == ""
        assert f"adaemonservesDAGSTER_HOME={env['DAGSTER_HOME']}(heartbeat" in unwrapped


_READ_CURSOR = """
from dagster import DagsterInstance
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
instance = DagsterInstance.get()
with WorkspaceProcessContext(instance, WorkspaceFileTarget(["workspace.yaml"])) as ctx:
    location = ctx.create_request_context().get_code_location("dataloop")
    repo = next(iter(location.get_repositories().values()))
    sensor = repo.get_sensor("raw_upload_sensor")
    state = instance.get_instigator_state(sensor.get_remote_origin_id(), sensor.selector_id)
    print("CURSOR=" + state.instigator_data.cursor)
"""


@pytest.mark.parametrize(
    "args,message",
    [
        (["fleet", "upload", "{log}", "--vehicle", "../x"], "invalid vehicle id"),
        (["fleet", "upload", "/nonexistent.mcap", "--vehicle", "v"], "no such file"),
    ],
)
def test_errors_go_to_stderr_with_nonzero_exit(env, make_log, args, message):
    args = [a.format(log=make_log()) for a in args]
    proc = run(env, *args, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr and proc.stdout == ""


def test_conflicting_upload_is_refused(env, make_log):
    run(env, "fleet", "upload", str(make_log(seed=1)), "--vehicle", "veh-1", "--drive", "x")
    proc = run(
        env,
        "fleet",
        "upload",
        str(make_log(seed=2)),
        "--vehicle",
        "veh-1",
        "--drive",
        "x",
        check=False,
    )
    assert proc.returncode == 2 and "different" in proc.stderr


def test_fleet_simulate_writes_logs_and_uploads(env, tmp_path):
    out = tmp_path / "logs"
    proc = run(
        env,
        "fleet",
        "simulate",
        "--vehicles",
        "2",
        "--minutes",
        "0.2",
        "--seed",
        "4",
        "--out",
        str(out),
        "--upload",
        "--json",
    )
    reports = json.loads(proc.stdout)
    assert [r["vehicle"] for r in reports] == ["veh-0001", "veh-0002"]
    assert all(Path(f).exists() for r in reports for f in r["drive_files"])
    lake = Path(env["DATALOOP_LAKE"])
    assert len(list(lake.glob("raw/date=*/vehicle=*/*.manifest.json"))) == sum(
        len(r["drive_files"]) for r in reports
    )
    assert len(list(lake.glob("telemetry/date=*/vehicle=*/*.json"))) == 2


def test_adapters_check_dry_runs_a_foreign_log_without_a_lake(env, tmp_path):
    """`dataloop adapters check` reports rows per table and the unmapped topics of a log that
    carries channels outside the contract, and the quarantine reason of one whose mapped
    payload is garbage (exit 1); it never creates or touches a lake."""
    from dataloop.fleet import contract
    from tests.helpers import ForeignChannel, write_minimal_log

    diag = ForeignChannel(
        "/vehicle/diag", "acme_msgs/msg/Diag", "ros2msg", "cdr", b"\x00\x01\x00\x00"
    )
    good = write_minimal_log(tmp_path / "mixed.mcap", drive="mixed", seconds=1.0, foreign=[diag])
    report = json.loads(run(env, "adapters", "check", str(good), "--json").stdout)
    assert report["ok"] and report["error"] is None
    assert report["identity"] == {"vehicle": "veh-1", "drive": "mixed"}
    assert report["tables"]["imu"] == 100 and report["tables"]["frames"] == 10
    assert [(c["topic"], c["messages"]) for c in report["unmapped_topics"]] == [
        ("/vehicle/diag", 3)
    ]
    table = run(env, "adapters", "check", str(good)).stdout
    assert "unmapped topics" in table and "acme_msgs/msg/Diag" in table

    bad = write_minimal_log(
        tmp_path / "bad.mcap", drive="bad", raw_messages=[(contract.IMU.topic, b"\xff\xff")]
    )
    proc = run(env, "adapters", "check", str(bad), "--json", check=False)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["error"]["code"] == "undecodable_message"
    assert "would be quarantined: undecodable_message: topic '/imu'" in proc.stderr
    assert not Path(env["DATALOOP_LAKE"]).exists()

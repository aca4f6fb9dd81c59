"""``dataloop tick`` killed mid-run, then two ticks at once: the killed run is re-executed
exactly once, nothing is lost or duplicated, and the lake matches an uninterrupted ingest."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dataloop import daemon
from dataloop.fleet.uploader import upload_drive
from dataloop.lake import layout as L
from dataloop.lake.local import LocalStore
from tests.faults.loop import audit
from tests.helpers import ingest_everything
from tests.test_crash import snapshot

REPO = Path(__file__).resolve().parents[1]
DATALOOP = Path(sys.executable).parent / "dataloop"


@pytest.mark.chaos
def test_killed_tick_then_two_ticks_at_once(tmp_path, make_log):
    lake = LocalStore(tmp_path / "lake")
    logs = [("veh-5", f"t-{k}", make_log(vehicle="veh-5", drive=f"t-{k}", seed=k)) for k in (1, 2)]
    for vehicle, drive, path in logs:
        upload_drive(lake, path, vehicle=vehicle, drive=drive)
    reference = tmp_path / "reference"
    shutil.copytree(lake.root, reference)
    ingest_everything(LocalStore(reference))

    shutil.copy(REPO / "workspace.yaml", tmp_path / "workspace.yaml")
    env = {
        **os.environ,
        "DATALOOP_LAKE": str(lake.root),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "PYTHONPATH": str(REPO),
    }

    def tick() -> subprocess.Popen:
        return subprocess.Popen(
            [str(DATALOOP), "tick", "--json"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    killed = tick()
    deadline = time.monotonic() + 120
    while not list((lake.root / "tables").glob("*/*/*/*.parquet")):  # inside the ingest run
        assert killed.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    # A crash takes the daemon and its run worker with it. Left alive, the orphaned run could
    # finish before the next tick clears it (on a loaded machine it did), leaving nothing to
    # recover.
    for pid in (tmp_path / "dagster" / daemon._PIDS).read_text().split():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(pid), signal.SIGKILL)

    first, second = tick(), tick()
    outputs = [json.loads(p.communicate(timeout=300)[0]) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0
    runs = [r for out in outputs for r in out["runs"]]
    assert all(r["status"] == "SUCCESS" for r in runs), runs
    jobs = sorted(r["what"] for r in runs)
    assert jobs == ["clip_embeddings+scenario_index", "ingest_job", "training_dataset"], runs
    assert [r for r in runs if r.get("recovered")][0]["what"] == "ingest_job"

    result = audit(lake, logs)
    assert (result.processed, result.lost, result.duplicated, result.partial) == (2, [], [], [])
    got, want = snapshot(lake.root), snapshot(reference)
    assert any(k.startswith(L.LEDGER_DRIVES) for k in want)
    for key in want:
        if key.startswith("tables/"):
            assert got[key] == want[key], key
        if key.startswith(L.LEDGER_DRIVES):  # the reference only ingested
            assert got[key]["ingest"] == want[key]["ingest"], key

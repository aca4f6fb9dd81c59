"""Every signal fault the fleet simulator injects ends in a precise verdict: the drive fails
the expectation family that describes that fault (through upload, ingest and the suites)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dataloop.fleet.simulator.config import SimConfig
from dataloop.fleet.simulator.fleet import simulate_fleet
from dataloop.ingest.hour import arrival_hours
from dataloop.lake import ledger
from dataloop.lake.local import LocalStore
from dataloop.quality.hour import check_hour
from dataloop.quality.suites import load_suites
from tests.helpers import ingest_hour, upload_days

FAMILY = {
    "nan_signal": "nan",
    "out_of_range": "range",
    "camera_freeze": "camera_freeze",
    "dropped_frames": "gaps",
    "gnss_jump": "gnss_jump",
    "clock_backwards": "monotonic",
}


def test_every_injected_fault_is_named_by_the_verdict(tmp_path):
    config = replace(
        SimConfig().without_faults(),
        roads={"highway": 1.0},
        corner_cases_per_hour={k: 0.0 for k in SimConfig().corner_cases_per_hour},
        signal_faults_per_hour={k: 90.0 for k in FAMILY},
    )
    store = LocalStore(tmp_path / "lake")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    reports = simulate_fleet(
        vehicles=1,
        minutes=2,
        seed=21,
        out=tmp_path / "logs",
        start=start,
        config=config,
        lake=str(store.root),
    )
    suites = load_suites()
    for hour in arrival_hours(store, upload_days(store)):
        ingest_hour(store, hour)
        check_hour(store, hour, suites)
    checked = 0
    for d in reports[0].drives:
        truth = json.loads(Path(d["path"]).with_suffix(".truth.json").read_text())
        verdict = ledger.section(store, "veh-0001", d["drive"], ledger.VERDICT)
        families = {f["family"] for f in verdict["failures"]}
        for fault in truth["faults"]:
            if fault["t"] + fault["duration_s"] < d["seconds"] - 0.5:
                checked += 1
                assert FAMILY[fault["type"]] in families, (fault, verdict["failures"])
        if any(f["severity"] == "quarantine" for f in verdict["failures"]):
            assert verdict["verdict"] == "quarantine"
    assert checked >= len(FAMILY)


def test_uploads_set_aside_at_ingest_carry_their_reason_into_the_verdict(tmp_path):
    from mcap.writer import CompressionType

    from dataloop.fleet import contract
    from tests.helpers import commit_raw, write_minimal_log

    store = LocalStore(tmp_path / "lake")
    garbage = tmp_path / "garbage.mcap"
    garbage.write_bytes(b"\x00" * 4096)
    no_imu = [c for c in contract.CHANNELS if c is not contract.IMU]
    cut = write_minimal_log(tmp_path / "c.mcap", drive="cut", seconds=8.0, chunk_size=32_000)
    cut.write_bytes(cut.read_bytes()[: int(cut.stat().st_size * 0.6)])
    cases = {
        "cut": (cut, "truncated"),
        "garbage": (garbage, "not_mcap"),
        "no-imu": (  # ingest requires no table: the fleet profile's check sets it aside
            write_minimal_log(tmp_path / "n.mcap", drive="no-imu", channels=no_imu),
            "missing_table",
        ),
        "ok": (
            write_minimal_log(tmp_path / "o.mcap", drive="ok", compression=CompressionType.NONE),
            None,
        ),
    }
    for drive, (path, _) in cases.items():
        commit_raw(store, path, vehicle="veh-1", drive=drive)
    suites = load_suites()
    verdicts = {}
    for hour in arrival_hours(store, upload_days(store)):
        ingest_hour(store, hour)
        verdicts.update({d["drive"]: d for d in check_hour(store, hour, suites).drives})
    for drive, (_, code) in cases.items():
        if code is None:
            assert verdicts[drive]["stage"] == "quality"
        elif code == "missing_table":
            assert verdicts[drive]["stage"] == "quality"
            assert verdicts[drive]["verdict"] == "quarantine"
            failed = {f["expectation"]: f["family"] for f in verdicts[drive]["failures"]}
            assert failed["fleet.imu"] == "missing_table"
            assert {f for f, fam in failed.items() if fam == "missing_table"} == {"fleet.imu"}
        elif code == "truncated":  # recovered: checked, and the verdict says what was lost
            assert verdicts[drive]["verdict"] in ("warn", "quarantine")
            assert "ingest.truncated" in {f["expectation"] for f in verdicts[drive]["failures"]}
        else:
            assert verdicts[drive]["verdict"] == "quarantine"
            assert [f["expectation"] for f in verdicts[drive]["failures"]] == [f"ingest.{code}"]

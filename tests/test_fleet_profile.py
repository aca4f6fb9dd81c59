"""Each stage checks what it needs: ingest requires no table; the fleet profile
(assets/quality/fleet.yaml) says which tables every drive must carry, and quality checks it;
labelling, mining, compliance and training each set aside, with a reason, a drive that lacks
a table they need, while the stages it does satisfy go on."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from dataloop.curation import datasets as D
from dataloop.curation.clips import CLIP_SCHEMA
from dataloop.curation.scenarios import load_scenarios, mine_day
from dataloop.fleet import contract
from dataloop.fleet.simulator.config import SimConfig
from dataloop.fleet.simulator.fleet import simulate_fleet
from dataloop.ingest.hour import arrival_hours
from dataloop.ingest.tables import lacking, read_table
from dataloop.labeling.hour import label_hour
from dataloop.labeling.offboard import load_params
from dataloop.lake import ledger
from dataloop.lake.layout import day_index_key
from dataloop.lake.local import LocalStore
from dataloop.lake.pointers import read_json
from dataloop.quality.anonymise import HaarDetector
from dataloop.quality.approved import approve_hour
from dataloop.quality.compliance import comply_hour
from dataloop.quality.hour import check_hour
from dataloop.quality.suites import load_fleet, load_suites
from dataloop.rules import RulesError, rules_dir
from dataloop.search.index import build_day_index
from dataloop.training.config import model_config
from dataloop.training.samples import build_samples
from tests.helpers import commit_raw, ingest_hour, rerecord, upload_days

VEHICLE = "veh-0001"  # the simulated fleet's first vehicle
T0 = int((datetime.now(UTC) - timedelta(minutes=5)).timestamp() * 1e9)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    """One 24 s fleet-simulator drive (every contract channel), to re-record without some."""
    out = tmp_path_factory.mktemp("fleet")
    start = datetime.fromtimestamp(T0 / 1e9, UTC)
    config = SimConfig().without_faults()
    reports = simulate_fleet(vehicles=1, minutes=0.4, seed=5, out=out, start=start, config=config)
    return Path(reports[0].drives[0]["path"])


def _drives(tmp_path: Path, store: LocalStore, recorded: Path, **dropped: set[str]) -> list[str]:
    """Commit the recorded drive once per ``name=topics it does not record``; ingest."""
    for drive, topics in dropped.items():
        path = rerecord(recorded, tmp_path / f"{drive}.mcap", drop=topics, drive=drive)
        commit_raw(store, path, vehicle=VEHICLE, drive=drive)
    hours = arrival_hours(store, upload_days(store))
    for hour in hours:
        report = ingest_hour(store, hour)
        assert {d["drive"]: d["status"] for d in report.drives} == dict.fromkeys(
            dropped, "ingested"
        ), "ingest requires no table"
    return hours


def _rules(tmp_path, fleet_yaml: str):
    rules = tmp_path / "rules"
    shutil.copytree(rules_dir(), rules)
    (rules / "quality" / "fleet.yaml").write_text(fleet_yaml)
    return rules


def test_shipped_profile_requires_what_the_contract_requires():
    """The simulated fleet's contract and the shipped profile agree (one fleet, one list)."""
    required = list(dict.fromkeys(c.table for c in contract.CHANNELS if c.required))
    assert load_fleet()["required_tables"] == required
    assert load_fleet()["front_camera"] == "front"


def test_a_drive_without_a_required_table_is_quarantined_by_quality(tmp_path, recorded):
    store = LocalStore(tmp_path / "lake")
    hours = _drives(tmp_path, store, recorded, full=set(), **{"no-gnss": {contract.GNSS.topic}})
    verdicts = {}
    for hour in hours:
        verdicts |= {d["drive"]: d for d in check_hour(store, hour, load_suites()).drives}
    assert verdicts["full"]["verdict"] != "quarantine", verdicts["full"]["failures"]
    failures = verdicts["no-gnss"]["failures"]
    assert verdicts["no-gnss"]["verdict"] == "quarantine"
    assert [f["expectation"] for f in failures if f["family"] == "missing_table"] == ["fleet.gnss"]
    assert ledger.section(store, VEHICLE, "no-gnss", ledger.VERDICT)["verdict"] == "quarantine"


def test_each_stage_sets_aside_what_lacks_its_tables_and_the_others_go_on(
    tmp_path, recorded, monkeypatch
):
    """Five drives, each without what one stage needs, under a profile that requires only
    the IMU: quality passes them all; compliance sets aside the one without GNSS (`no_gnss`:
    the geofence cannot be shown); labelling those without objects or CAN; mining the one
    without CAN (and still mines the one without objects: its ego-only scenarios); search
    the one without a camera (`no_frames`); training the ones without lanes or CAN."""
    monkeypatch.setenv("DATALOOP_IMAGE_ENCODER", "tests.test_search:MeanColour")
    store = LocalStore(tmp_path / "lake")
    no_objects = {contract.OBJECTS.topic}
    hours = _drives(
        tmp_path,
        store,
        recorded,
        perceptionless=no_objects,
        positionless=no_objects | {contract.GNSS.topic},
        laneless={contract.LANE.topic},
        canless={contract.VEHICLE_STATE.topic},
        blind={contract.CAMERA.topic},
    )
    rules = _rules(tmp_path, "required_tables: [imu]\n")
    suites = load_suites(rules)
    assert suites.version != load_suites().version, "the profile is part of the suites"
    params = load_params(rules / "labeling" / "offboard.yaml")
    labelled, days = [], sorted({h[:10] for h in hours})
    for hour in hours:
        quality = check_hour(store, hour, suites)
        assert all(d["stage"] == "quality" for d in quality.drives)
        assert not any(
            f["family"] == "missing_table" for d in quality.drives for f in d["failures"]
        )
        assert len(approve_hour(store, hour)) == 5
        comply_hour(store, hour, HaarDetector(), [], "v1")
        states = ledger.hour_drives(store, hour)
        assert [s.drive for s in states if s.compliant] == [
            "blind", "canless", "laneless", "perceptionless"
        ]  # fmt: skip
        assert [
            [s.vehicle, s.drive, s.compliance["set_aside"]]
            for s in states
            if "set_aside" in (s.compliance or {})
        ] == [[VEHICLE, "positionless", "no_gnss"]]
        labelled += label_hour(store, hour, params)
    assert {r["drive"]: r.get("set_aside") for r in labelled} == {
        "blind": None,
        "canless": "no_vehicle_state",
        "laneless": None,
        "perceptionless": "no_objects",
    }
    for day in days:
        mine_day(store, day, load_scenarios())
        record = read_json(store, day_index_key(day))
        assert record["drives"] == 3 and record["set_aside"] == [
            [VEHICLE, "canless", "no_vehicle_state"]
        ]
        pointer = build_day_index(store, day, CLIP_SCHEMA.empty_table())
        assert pointer["set_aside"] == [[VEHICLE, "blind", "no_frames"]]
    # training: a whole-drive clip of each; those without lanes or CAN are set aside
    rows = []
    for drive in ("canless", "laneless", "perceptionless"):
        tables = ledger.section(store, VEHICLE, drive, ledger.INGEST)["tables"]
        times = read_table(store, tables["imu"]["key"])["t"]
        rows.append({
            "clip_id": drive, "vehicle_id": VEHICLE, "drive_id": drive,
            "drive_version": ledger.drive(store, VEHICLE, drive).version,
            "scenario": "lane_keeping",
            "start_t": pc.min(times).as_py(), "end_t": pc.max(times).as_py(), "severity": 1.0,
            "split": "train", "weight": 1.0, "tags": [], "road": "highway", "conditions": "day",
            "day": days[0],
        })  # fmt: skip
    manifest = pa.Table.from_pylist(rows, schema=D.MANIFEST_SCHEMA)
    version = D.publish(store, "test", manifest, {})["version"]
    samples = build_samples(store, version, model_config())
    assert samples.report["set_aside"] == {"no_lanes": 1, "no_vehicle_state": 1}
    assert samples.report["drives"] == 1 and len(samples) > 0


def test_lacking_names_the_first_missing_table():
    tables = {"vehicle_state": {"rows": 10}, "objects": {"rows": 0}}
    assert lacking(tables, ("vehicle_state",)) is None
    assert lacking(tables, ("vehicle_state", "objects", "lanes")) == "no_objects"
    assert lacking(tables, ("lanes",)) == "no_lanes"


def test_a_bad_profile_names_file_line_and_allowed_values(tmp_path):
    path = tmp_path / "fleet.yaml"
    path.write_text("front_camera: front\nrequired_tables: [frames, lidar]\n")
    with pytest.raises(RulesError, match=r"fleet\.yaml, line 2.*'lidar'.*allowed: frames"):
        load_fleet(path)
    path.write_text("required_table: [frames]\n")
    with pytest.raises(RulesError, match=r"line 1.*required_table"):
        load_fleet(path)


def test_two_imus_and_two_receivers_are_each_their_own_sensor(tmp_path, recorded):
    """A vehicle with a second IMU and a second GNSS receiver, at the same instants as the
    first: each row names its sensor, and order and rate are checked per sensor (two 100 Hz
    IMUs interleave; neither runs backwards or at 200 Hz)."""
    store = LocalStore(tmp_path / "lake")
    copies = {
        contract.IMU.topic: ("/sensing/imu/rear/imu_raw", lambda payload: payload),
        contract.GNSS.topic: ("/sensing/gnss/secondary/fix", lambda payload: payload),
    }
    path = rerecord(recorded, tmp_path / "two.mcap", copies=copies, drive="two")
    commit_raw(store, path, vehicle=VEHICLE, drive="two")
    (hour,) = arrival_hours(store, upload_days(store))
    ingest_hour(store, hour)
    tables = ledger.section(store, VEHICLE, "two", ledger.INGEST)["tables"]
    for name, first, second in (("imu", "imu", "rear"), ("gnss", "gnss_fix", "secondary")):
        sensors = read_table(store, tables[name]["key"])["sensor"].to_pylist()
        assert set(sensors) == {first, second} and sensors.count(first) == sensors.count(second)
    (verdict,) = check_hour(store, hour, load_suites()).drives
    assert verdict["verdict"] != "quarantine", verdict["failures"]
    assert not [f for f in verdict["failures"] if f["expectation"].split(".")[0] in ("imu", "gnss")]

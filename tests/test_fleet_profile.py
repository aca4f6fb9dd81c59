"""Each stage checks what it needs: ingest requires no table; the fleet profile
(assets/quality/fleet.yaml) says which tables every drive must carry, and quality checks it;
labelling, mining, compliance and training each set aside, with a reason, a drive that lacks
a table they need, while the stages it does satisfy go on."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dataloop.curation.scenarios import load_scenarios, mine_day
from dataloop.fleet import contract
from dataloop.fleet.synthetic import write_synthetic_drive
from dataloop.ingest.hour import arrival_hours
from dataloop.ingest.tables import lacking
from dataloop.labeling.hour import label_hour
from dataloop.labeling.offboard import load_params
from dataloop.lake.layout import compliant_hour_key, day_index_key, verdict_key
from dataloop.lake.local import LocalStore
from dataloop.lake.pointers import read_json
from dataloop.quality.anonymise import HaarDetector
from dataloop.quality.approved import approve_hour
from dataloop.quality.compliance import comply_hour
from dataloop.quality.hour import check_hour
from dataloop.quality.suites import load_fleet, load_suites
from dataloop.rules import RulesError, rules_dir
from tests.helpers import commit_raw, ingest_hour, rerecord, upload_days

T0 = int((datetime.now(UTC) - timedelta(minutes=5)).timestamp() * 1e9)


def _drives(tmp_path: Path, store: LocalStore, **dropped: set[str]) -> list[str]:
    """Commit one 20 s simulated drive per ``name=topics it does not record``; ingest."""
    for i, (drive, topics) in enumerate(dropped.items()):
        full = write_synthetic_drive(
            tmp_path / f"{drive}.full.mcap", vehicle="veh-1", drive=drive, start_ns=T0,
            duration_s=20.0, seed=i,
        )  # fmt: skip
        path = rerecord(full, tmp_path / f"{drive}.mcap", drop=topics)
        commit_raw(store, path, vehicle="veh-1", drive=drive)
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


def test_a_drive_without_a_required_table_is_quarantined_by_quality(tmp_path):
    store = LocalStore(tmp_path / "lake")
    hours = _drives(tmp_path, store, full=set(), **{"no-gnss": {contract.GNSS.topic}})
    verdicts = {}
    for hour in hours:
        verdicts |= {d["drive"]: d for d in check_hour(store, hour, load_suites()).drives}
    assert verdicts["full"]["verdict"] != "quarantine", verdicts["full"]["failures"]
    failures = verdicts["no-gnss"]["failures"]
    assert verdicts["no-gnss"]["verdict"] == "quarantine"
    assert [f["expectation"] for f in failures if f["family"] == "missing_table"] == ["fleet.gnss"]
    assert read_json(store, verdict_key("veh-1", "no-gnss"))["verdict"] == "quarantine"


def test_each_stage_sets_aside_what_lacks_its_tables_and_the_others_go_on(tmp_path):
    """A fleet without onboard perception (no objects) and one drive that also lost its
    GNSS: quality passes both under a profile that requires neither; compliance sets the
    GNSS-less drive aside (`no_gnss`: the geofence cannot be shown); labelling sets the
    other aside (`no_objects`), and mining still mines it (it needs only vehicle_state)."""
    store = LocalStore(tmp_path / "lake")
    no_objects = {contract.OBJECTS.topic}
    hours = _drives(
        tmp_path,
        store,
        perceptionless=no_objects,
        positionless=no_objects | {contract.GNSS.topic},
    )
    rules = _rules(tmp_path, "required_tables: [vehicle_state, imu]\n")
    suites = load_suites(rules)
    assert suites.version != load_suites().version, "the profile is part of the suites"
    params = load_params(rules / "labeling" / "offboard.yaml")
    labelled, mined = [], set()
    for hour in hours:
        quality = check_hour(store, hour, suites)
        assert all(d["stage"] == "quality" for d in quality.drives)
        assert not any(
            f["family"] == "missing_table" for d in quality.drives for f in d["failures"]
        )
        assert len(approve_hour(store, hour)) == 2
        comply_hour(store, hour, HaarDetector(), [], "v1")
        compliant = read_json(store, compliant_hour_key(hour))
        assert [d["drive"] for d in compliant["drives"]] == ["perceptionless"]
        assert compliant["set_aside"] == [["veh-1", "positionless", "no_gnss"]]
        labelled += label_hour(store, hour, params)
        mined.add(hour[:10])
    assert labelled == [{"vehicle": "veh-1", "drive": "perceptionless", "set_aside": "no_objects"}]
    for day in mined:
        mine_day(store, day, load_scenarios())
        record = read_json(store, day_index_key(day))
        assert record["drives"] == 1 and record["set_aside"] == []


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

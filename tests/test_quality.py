"""Quality suites: each expectation family fails on a crafted bad drive and passes on a good
one; verdicts, the hour's fitness, and the blocking check in real Dagster runs."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from dataloop.fleet.synthetic import write_synthetic_drive
from dataloop.ingest.decode import decode_log
from dataloop.quality.hour import run_checks
from dataloop.quality.suites import load_suites
from dataloop.quality.verdicts import drive_verdict, hour_fitness

SUITES = load_suites()


@pytest.fixture(scope="module")
def good_tables(tmp_path_factory):
    path = write_synthetic_drive(
        tmp_path_factory.mktemp("q") / "good.mcap",
        vehicle="veh-1",
        drive="good",
        start_ns=time.time_ns(),
        duration_s=20.0,
        seed=3,
    )
    with path.open("rb") as f:
        tables = decode_log(f, vehicle="veh-1", drive="good").tables
    return {
        name: t.append_column("row", pa.array(range(t.num_rows), pa.int64()))
        for name, t in tables.items()
    }


def _replace(table: pa.Table, column: str, values) -> pa.Table:
    i = table.schema.get_field_index(column)
    return table.set_column(i, column, pa.array(values, table.schema.field(column).type))


def _set(table: pa.Table, column: str, rows: slice, value) -> pa.Table:
    values = table.column(column).to_pylist()
    values[rows] = [value] * len(values[rows])
    return _replace(table, column, values)


def _shift_time(table: pa.Table, rows: slice, seconds: float) -> pa.Table:
    t = table.column("t").cast(pa.int64()).to_numpy().copy()
    t[rows] += int(seconds * 1e9)
    return _replace(table, "t", pa.array(t).cast(table.schema.field("t").type))


def _drop(table: pa.Table, rows: slice) -> pa.Table:
    keep = np.ones(table.num_rows, bool)
    keep[rows] = False
    t = table.filter(pa.array(keep))
    return _replace(t, "row", list(range(t.num_rows)))


def _frames_frozen(t: pa.Table) -> pa.Table:
    sha = t.column("jpeg_sha256").to_pylist()
    sha[50:58] = [sha[50]] * 8
    return _replace(t, "jpeg_sha256", sha)


def _gnss_jump(t: pa.Table) -> pa.Table:
    return _replace(
        t,
        "latitude",
        pc.add(
            t.column("latitude"),
            pa.array([0.002 if 60 <= i < 62 else 0.0 for i in range(t.num_rows)]),
        ),
    )


def _duplicate_object(t: pa.Table) -> pa.Table:
    return pa.concat_tables([t, t.slice(10, 1)])


BAD = {
    "monotonic": ("imu", lambda t: _shift_time(t, slice(500, None), -0.5)),
    "rate": ("vehicle_state", lambda t: _drop(t, slice(100, 200))),
    "gaps": ("frames", lambda t: _drop(t, slice(40, 45))),
    "nan": ("vehicle_state", lambda t: _set(t, "speed_mps", slice(30, 40), float("nan"))),
    "range": ("vehicle_state", lambda t: _set(t, "speed_mps", slice(30, 32), 150.0)),
    "gnss_jump": ("gnss", _gnss_jump),
    "camera_freeze": ("frames", _frames_frozen),
    "jpeg": ("frames", lambda t: _set(t, "jpeg_valid", slice(5, 6), False)),
    "object_sanity": ("objects", _duplicate_object),
    "sync": ("frames", lambda t: _shift_time(t, slice(None), 1.0)),
}


def _failures(tables):
    results = run_checks(tables, SUITES)
    return {(r.family, r.expectation) for r in results if r.failed}


def test_a_good_drive_passes_every_expectation(good_tables):
    assert _failures(good_tables) == set()
    families = {e.family for e in SUITES.expectations}
    assert set(BAD) <= families, "every family has a bad-drive test below"


@pytest.mark.parametrize("family", sorted(BAD))
def test_each_family_fails_on_its_bad_drive(good_tables, family):
    table, corrupt = BAD[family]
    failures = _failures({**good_tables, table: corrupt(good_tables[table])})
    assert family in {f for f, _ in failures}, failures


def test_duckdb_and_gx_agree_on_the_same_checks(good_tables):
    bad = {**good_tables, "vehicle_state": BAD["range"][1](good_tables["vehicle_state"])}
    bad["frames"] = BAD["jpeg"][1](good_tables["frames"])
    gx = {(r.expectation, r.unexpected) for r in run_checks(bad, SUITES, engine="gx")}
    db = {(r.expectation, r.unexpected) for r in run_checks(bad, SUITES, engine="duckdb")}
    assert gx == db
    assert ("vehicle_state.speed_range", 2) in db and ("frames.decodable_jpeg", 1) in db


def test_verdict_severity_and_hour_fitness():
    from dataloop.quality.verdicts import CheckResult

    def result(severity, unexpected):
        return CheckResult("s.x", "range", severity, "gx", "v", "d", unexpected, 100)

    assert drive_verdict([result("quarantine", 0), result("warn", 0)])["verdict"] == "pass"
    assert drive_verdict([result("warn", 3)])["verdict"] == "warn"
    v = drive_verdict([result("warn", 3), result("quarantine", 1)])
    assert v["verdict"] == "quarantine" and v["failures"][0]["severity"] == "quarantine"
    policy = {"max_quarantine_rate": 0.5, "min_usable_drives": 1}
    ok = [{"verdict": "pass"}, {"verdict": "quarantine"}]
    assert hour_fitness(ok, policy, []) == (True, [])
    fit, reasons = hour_fitness([{"verdict": "quarantine"}] * 3 + [{"verdict": "warn"}], policy, [])
    assert not fit and "quarantine rate 75%" in reasons[0]
    assert not hour_fitness([], policy, [])[0]
    assert "schema drift" in hour_fitness(ok, policy, ["v/d (imu)"])[1][0]


def test_approved_drives_are_the_hours_unquarantined_verdicts_sorted(tmp_path):
    """The selection as plain Python: pass and warn are approved, quarantine is not, nor a
    verdict on an earlier upload than the one that counts; the list written for the hour is
    what compliance reads back."""
    from dataloop.lake import ledger
    from dataloop.lake.layout import approved_key
    from dataloop.lake.local import LocalStore
    from dataloop.lake.pointers import read_json
    from dataloop.quality.approved import approve_hour, read_approved

    store, hour = LocalStore(tmp_path / "lake"), "2026-05-01-13:00"
    assert approve_hour(store, hour) == [] and read_approved(store, hour) == []
    for vehicle, drive, verdict, judged in [
        ("veh-b", "d2", "warn", "m"),
        ("veh-a", "d9", "quarantine", "m"),
        ("veh-a", "d1", "pass", "m"),
        ("veh-a", "d5", "pass", "an earlier upload"),
    ]:
        ingest = {"status": "ingested", "hour": hour, "manifest_key": "m"}
        ledger.write_section(store, vehicle, drive, ledger.INGEST, ingest)
        ledger.write_section(
            store, vehicle, drive, ledger.VERDICT, {"verdict": verdict, "manifest_key": judged}
        )
    assert approve_hour(store, hour) == [("veh-a", "d1"), ("veh-b", "d2")]
    assert read_json(store, approved_key(hour)) == {
        "hour": hour,
        "drives": [["veh-a", "d1"], ["veh-b", "d2"]],
    }
    assert read_approved(store, hour) == [("veh-a", "d1"), ("veh-b", "d2")]


def _two_cameras(frames: pa.Table, rear=lambda t: t) -> pa.Table:
    """The front camera and a rear one at the same 10 Hz, interleaved in log order."""
    front = frames.drop_columns(["row"])
    back = rear(_replace(front, "camera", ["rear"] * front.num_rows))
    both = pa.concat_tables([front, back])
    order = np.argsort(np.r_[np.arange(front.num_rows) * 2, np.arange(back.num_rows) * 2 + 1])
    both = both.take(pa.array(order))
    return both.append_column("row", pa.array(range(both.num_rows), pa.int64()))


def test_several_cameras_are_each_checked_on_their_own(good_tables):
    """Two cameras at 10 Hz in one frames table are neither out of order nor at 20 Hz; a
    freeze or a gap in one of them is still found."""
    assert _failures({**good_tables, "frames": _two_cameras(good_tables["frames"])}) == set()
    frozen = {**good_tables, "frames": _two_cameras(good_tables["frames"], _frames_frozen)}
    assert _failures(frozen) == {("camera_freeze", "frames.no_camera_freeze")}
    gap = _two_cameras(
        good_tables["frames"],
        lambda t: t.filter(pa.array([not 40 <= i < 45 for i in range(t.num_rows)])),
    )
    assert ("gaps", "frames.no_dropped_frames") in _failures({**good_tables, "frames": gap})

"""All cores per arrival hour: ingest, compliance and labels run an hour's drives in
``DATALOOP_WORKERS`` processes (dataloop/infra/workers.py). The lake they leave is the one the
in-process path leaves, byte for byte but for the time stamps; a worker that dies, or a drive
that raises, is that drive's failure only: every other drive of the hour is recorded."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import pytest

from dataloop.fleet.uploader import upload_drive
from dataloop.infra.workers import DrivesFailed, Failure, cores, map_drives, worker_count
from dataloop.ingest.hour import arrival_hours, ingest_hour, upload_days
from dataloop.labeling.hour import label_hour
from dataloop.labeling.offboard import load_params
from dataloop.lake import layout as L
from dataloop.lake import ledger
from dataloop.lake.local import LocalStore
from dataloop.lake.pointers import read_json
from dataloop.lake.s3 import S3Options, S3Store
from dataloop.quality.anonymise import HaarDetector
from dataloop.quality.approved import approve_hour
from dataloop.quality.compliance import comply_hour
from dataloop.quality.hour import check_hour
from dataloop.quality.suites import load_suites
from dataloop.rules import rules_dir
from tests.test_crash import snapshot

VEHICLE = "veh-7"
DRIVES = ["p-0", "p-1", "p-2", "p-3"]


class DyingStore(LocalStore):
    """A local lake whose reads of chosen drives' objects under ``zone`` end badly in the
    process that makes them: ``die`` (``os._exit``, as a crashing decoder or the OOM killer
    would) or ``raise`` (an I/O error). It travels to the workers as any store does (by its
    class and folder); the process that lists and indexes the hour never reads a drive's
    data, so only the worker of a chosen drive meets the fault."""

    def __init__(self, root: Path, faults: dict[str, str], zone: str):
        super().__init__(root)
        self.faults, self.zone = faults, zone

    def _check(self, key: str) -> None:
        if not key.startswith(self.zone):
            return
        for drive, fault in self.faults.items():
            if f"/{drive}." in key or f"/drive={drive}/" in key:
                if fault == "raise":
                    raise OSError(f"injected read error on {key}")
                os._exit(3)

    def open(self, key: str):
        self._check(key)
        return super().open(key)

    def get(self, key: str) -> bytes:
        self._check(key)
        return super().get(key)


def _hour(tmp_path: Path, make_log, *, garbage: bool = True) -> tuple[Path, str]:
    """A lake with one arrival hour: four short drives, and an upload that is no MCAP."""
    store = LocalStore(tmp_path / "base")
    for k, drive in enumerate(DRIVES):
        path = make_log(vehicle=VEHICLE, drive=drive, seed=k)
        upload_drive(store, path, vehicle=VEHICLE, drive=drive)
    if garbage:
        (tmp_path / "garbage.mcap").write_bytes(b"\x89MCAP0\r\n" + bytes(5000))
        upload_drive(store, tmp_path / "garbage.mcap", vehicle=VEHICLE, drive="bad")
    (hour,) = arrival_hours(store, upload_days(store))
    return store.root, hour


def _lake(base: Path, name: str, tmp_path: Path) -> LocalStore:
    shutil.copytree(base, tmp_path / name)  # copy2: the manifests keep their arrival times
    return LocalStore(tmp_path / name)


def test_worker_count_reads_the_variable_else_the_cores(monkeypatch, tmp_path):
    monkeypatch.delenv("DATALOOP_WORKERS", raising=False)
    assert worker_count() == cores() <= len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    for quota, expected in (("max 100000", 1 << 16), ("150000 100000", 2), ("50000 100000", 1)):
        cpu_max.write_text(quota + "\n")
        assert cores(cpu_max) == min(expected, len(os.sched_getaffinity(0)))
    assert cores(tmp_path / "none") == len(os.sched_getaffinity(0))
    monkeypatch.setenv("DATALOOP_WORKERS", "3")
    assert worker_count() == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("DATALOOP_WORKERS", bad)
        with pytest.raises(ValueError, match="DATALOOP_WORKERS"):
            worker_count()


def test_stores_and_detector_travel_as_their_recipe(tmp_path):
    options = S3Options(endpoint_url="http://127.0.0.1:1", region="eu-west-1", max_attempts=2)
    s3 = pickle.loads(pickle.dumps(S3Store("bucket", "pre/fix", options=options)))
    assert (s3.url, s3.options) == ("s3://bucket/pre/fix/", options)
    with pytest.raises(TypeError, match="own client"):
        pickle.dumps(S3Store("bucket", client=options.client()))
    with pytest.raises(TypeError, match="DATALOOP_WORKERS=1"):
        map_drives(_square, S3Store("bucket", client=options.client()), [1, 2], 0, workers=2)
    local = pickle.loads(pickle.dumps(LocalStore(tmp_path / "lake")))
    assert local.root == (tmp_path / "lake").absolute()
    assert pickle.loads(pickle.dumps(HaarDetector())).detect is not None


def test_workers_leave_the_lake_the_in_process_path_leaves(tmp_path, make_log, monkeypatch):
    """Ingest, quality, compliance and labels of one hour (four drives and a bad upload)
    with 1 worker and with 2: every object is the same, JSON without its time stamps."""
    base, hour = _hour(tmp_path, make_log)
    params = load_params(rules_dir() / "labeling" / "offboard.yaml")
    lakes, progress = {}, {}
    for workers in ("1", "2"):
        monkeypatch.setenv("DATALOOP_WORKERS", workers)
        store = _lake(base, f"workers-{workers}", tmp_path)
        seen: list[str] = []
        report = ingest_hour(store, hour, on_drive=lambda d, seen=seen: seen.append(d["drive"]))
        check_hour(store, hour, load_suites())
        approve_hour(store, hour)
        comply_hour(store, hour, HaarDetector(), [], "v1")
        labelled = label_hour(store, hour, params)
        assert [r["drive"] for r in labelled] == DRIVES
        lakes[workers] = snapshot(store.root)
        progress[workers] = (sorted(seen), [d["drive"] for d in report.drives])
    assert progress["1"] == progress["2"]
    assert sorted(progress["2"][0]) == sorted([*DRIVES, "bad"])
    assert lakes["1"].keys() == lakes["2"].keys()
    differing = [k for k in lakes["1"] if lakes["1"][k] != lakes["2"][k]]
    assert differing == []


def test_a_worker_that_dies_quarantines_its_upload_and_the_hour_goes_on(
    tmp_path, make_log, monkeypatch
):
    """The worker decoding p-2 dies (os._exit while reading its log): that upload is
    quarantined as ``worker_died``, every other drive is ingested and indexed, and a re-run
    skips them all (the dead one included: the same decoder would die again)."""
    monkeypatch.setenv("DATALOOP_WORKERS", "2")
    base, hour = _hour(tmp_path, make_log, garbage=False)
    store = DyingStore(_lake(base, "lake", tmp_path).root, {"p-2": "die"}, "raw/")
    report = ingest_hour(store, hour)
    status = {d["drive"]: d["status"] for d in report.drives}
    assert status == {"p-0": "ingested", "p-1": "ingested", "p-2": "quarantined", "p-3": "ingested"}
    (dead,) = [d for d in report.drives if d["drive"] == "p-2"]
    assert [r["code"] for r in dead["reasons"]] == ["worker_died"]
    assert read_json(store, L.quarantine_key(dead["manifest_key"]))["reasons"] == dead["reasons"]
    states = {s.drive: s for s in ledger.hour_drives(store, hour)}
    assert sorted(states) == DRIVES
    assert [d for d, s in states.items() if s.usable] == ["p-0", "p-1", "p-3"]
    again = ingest_hour(LocalStore(store.root), hour)
    assert all(d.get("skipped") for d in again.drives)


def test_a_drive_that_fails_in_compliance_fails_the_hour_after_the_others(
    tmp_path, make_log, monkeypatch
):
    """Compliance of p-1 raises in one worker and the worker anonymising p-3 dies: the hour
    fails naming both, the other drives are compliant and indexed, and the re-run (the fault
    gone) does only the two."""
    monkeypatch.setenv("DATALOOP_WORKERS", "2")
    base, hour = _hour(tmp_path, make_log, garbage=False)
    lake = _lake(base, "lake", tmp_path)
    ingest_hour(lake, hour)
    check_hour(lake, hour, load_suites())
    approve_hour(lake, hour)

    faulty = DyingStore(lake.root, {"p-1": "raise", "p-3": "die"}, "tables/")
    with pytest.raises(DrivesFailed) as failed:
        comply_hour(faulty, hour, HaarDetector(), [], "v1")
    assert [name for name, _ in failed.value.failures] == [f"{VEHICLE}/p-1", f"{VEHICLE}/p-3"]
    reasons = dict(failed.value.failures)
    assert "injected read error" in reasons[f"{VEHICLE}/p-1"]
    assert "died" in reasons[f"{VEHICLE}/p-3"]
    done = {s.drive for s in ledger.hour_drives(lake, hour) if s.compliance}
    assert done == {"p-0", "p-2"}
    results = comply_hour(lake, hour, HaarDetector(), [], "v1")
    assert [(r["drive"], bool(r.get("skipped"))) for r in results] == [
        ("p-0", True),
        ("p-1", False),
        ("p-2", True),
        ("p-3", False),
    ]


def _square(store, x: int, offset: int) -> int:
    if x == 3:
        raise ValueError("three")
    if x == 5:
        os._exit(9)
    return x * x + offset


def test_map_drives_keeps_the_order_of_the_items_and_reports_each_failure(tmp_path):
    store = LocalStore(tmp_path / "lake")
    for workers in (1, 2):
        items = [1, 2, 3, 4] + ([5, 6] if workers > 1 else [6])  # 5 kills its process
        seen: list = []
        out = map_drives(_square, store, items, 10, workers=workers, on_done=seen.append)
        assert out[:3] == [11, 14, Failure(3, "ValueError: three")]
        assert out[3] == 26 and out[-1] == 46
        if workers > 1:
            assert out[4] == Failure(5, "its worker process died", died=True)
        assert sorted(map(str, seen)) == sorted(map(str, out))


def test_an_s3_lake_travels_with_its_options(s3_lake, make_log, monkeypatch):
    """The workers open the S3 lake from the store's own options: with the endpoint no
    longer in the environment (as when a lake resource's settings name it), they still
    reach the server, and the hour is ingested."""
    monkeypatch.setenv("DATALOOP_WORKERS", "2")
    store = S3Store.from_url(s3_lake, S3Options.from_env())
    for k, drive in enumerate(DRIVES[:3]):
        upload_drive(store, make_log(vehicle=VEHICLE, drive=drive, seed=k), vehicle=VEHICLE)
    (hour,) = arrival_hours(store, upload_days(store))
    monkeypatch.delenv("DATALOOP_S3_ENDPOINT")
    report = ingest_hour(store, hour)
    assert [(d["drive"], d["status"]) for d in report.drives] == [
        (d, "ingested") for d in DRIVES[:3]
    ]
    assert [s.drive for s in ledger.hour_drives(store, hour)] == DRIVES[:3]


def test_a_quality_shard_that_fails_fails_the_hour_after_the_other_shards(
    tmp_path, make_log, monkeypatch
):
    """Quality checks the hour in shards of consecutive drives (2 workers: p-0 and p-1, p-2
    and p-3). Reading p-1's tables raises: its shard's drives fail the hour, the other
    shard's verdicts are written, the hour's fitness is not (it needs every drive), and the
    re-run judges the whole hour."""
    monkeypatch.setenv("DATALOOP_WORKERS", "2")
    base, hour = _hour(tmp_path, make_log, garbage=False)
    lake = _lake(base, "lake", tmp_path)
    ingest_hour(lake, hour)
    with pytest.raises(DrivesFailed) as failed:
        check_hour(DyingStore(lake.root, {"p-1": "raise"}, "tables/"), hour, load_suites())
    assert [name for name, _ in failed.value.failures] == [f"{VEHICLE}/p-0", f"{VEHICLE}/p-1"]
    assert {s.drive for s in ledger.hour_drives(lake, hour) if s.verdict} == {"p-2", "p-3"}
    assert read_json(lake, L.hour_verdicts_key(hour)) is None
    quality = check_hour(lake, hour, load_suites())
    assert [d["drive"] for d in quality.drives] == DRIVES and quality.fit

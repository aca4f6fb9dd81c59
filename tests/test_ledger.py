"""The per-drive ledger: one record per drive with a section per stage, one index per arrival
hour; stages writing at once lose nothing, a day reads in one request per hour, a drive's
version follows what curation consumes, and a deletion request leaves no trace of a drive."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from dataloop.lake import layout as L
from dataloop.lake import ledger
from dataloop.lake.local import LocalStore
from dataloop.lake.pointers import read_json, write_json
from dataloop.lake.store import open_store
from dataloop.lineage.forget import forget
from tests.helpers import at_once

DAY = "2026-05-01"
HOURS = [f"{DAY}-{h:02d}:00" for h in (3, 7, 15)]


class CountingStore:
    """A store that counts the requests made through it (every method call is one)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return attr(*args, **kwargs)

        return counted


def _ingest(hour: str, vehicle: str, drive: str, upload: str = "a") -> dict[str, Any]:
    return {
        "vehicle": vehicle,
        "drive": drive,
        "hour": hour,
        "status": "ingested",
        "manifest_key": f"raw/date={DAY}/vehicle={vehicle}/{drive}-{upload}.manifest.json",
        "tables": {"vehicle_state": {"key": f"tables/vs/{drive}-{upload}", "rows": 10}},
        "log_metadata": {"road": "highway", "conditions": "rain"},
    }


def _through_compliance(store, hour: str, vehicle: str, drive: str, upload: str = "a") -> None:
    ingest = _ingest(hour, vehicle, drive, upload)
    ledger.write_section(store, vehicle, drive, ledger.INGEST, ingest)
    base = {"vehicle": vehicle, "drive": drive, "manifest_key": ingest["manifest_key"]}
    verdict = {**base, "verdict": "pass", "failures": []}
    ledger.write_section(store, vehicle, drive, ledger.VERDICT, verdict)
    compliance = {**base, "version": "c1", "excluded": False, "frame_pack": "p", "frame_index": "i"}
    ledger.write_section(store, vehicle, drive, ledger.COMPLIANCE, compliance)


def _lake(tmp_path: Path, per_hour: int) -> LocalStore:
    store = LocalStore(tmp_path / f"lake-{per_hour}")
    for hour in HOURS:
        for k in range(per_hour):
            _through_compliance(store, hour, "veh-1", f"{hour[11:13]}-{k}")
    return store


def test_a_day_reads_in_one_request_per_hour_however_many_drives(tmp_path):
    for per_hour in (2, 6):
        store = CountingStore(_lake(tmp_path, per_hour))
        states = ledger.drives_of_day(store, DAY)
        assert len(states) == per_hour * len(HOURS)
        assert all(s.version is not None for s in states)
        assert sum(store.calls.values()) == len(L.day_hours(DAY)) == 24, store.calls
    # and one drive is one request
    store = CountingStore(_lake(tmp_path / "one", 1))
    state = ledger.drive(store, "veh-1", "03-0")
    assert state is not None and state.hour == HOURS[0]
    assert sum(store.calls.values()) == 1


def test_the_readers_of_later_stages_cost_one_request_per_hour(tmp_path):
    """Mining's drives and its change detector, the dataset's eligibility check and the
    `dataloop drives` overview read the hour indexes, not one record per drive."""
    import pyarrow as pa

    from dataloop.curation.clips import CLIP_SCHEMA
    from dataloop.curation.datasets import eligible
    from dataloop.curation.scenarios import curatable
    from dataloop.ingest.catalog import drives_overview
    from dataloop.lake.ledger import day_state

    store = CountingStore(_lake(tmp_path, 5))
    drives = [curatable(s) for s in ledger.drives_of_day(store, DAY) if s.version is not None]
    assert len(drives) == 15 and sum(store.calls.values()) == 24
    assert {d["road"] for d in drives} == {"highway"} and not any(d["set_aside"] for d in drives)
    store.calls.clear()
    assert day_state(store, DAY) is not None and sum(store.calls.values()) == 24
    rows = [
        {"vehicle_id": d["vehicle_id"], "drive_id": d["drive_id"], "clip_id": d["drive_id"]}
        | {"drive_version": d["drive_version"], "day": DAY}
        for d in drives
    ]
    clips = pa.Table.from_pylist(
        [{f.name: r.get(f.name) for f in CLIP_SCHEMA} for r in rows], schema=CLIP_SCHEMA
    )
    store.calls.clear()
    kept, dropped = eligible(store, clips)
    assert (kept.num_rows, dropped) == (15, 0) and sum(store.calls.values()) == 24
    store.calls.clear()
    overview = drives_overview(store)
    assert len(overview) == 15 and {r["stage"] for r in overview} == {"quality"}
    assert store.calls["get"] == len(HOURS) and store.calls["list"] == 2  # ledger, quarantine


def test_stages_writing_at_once_lose_no_section(store):
    """Every stage writes its own section of the same drives at the same moment, each from
    its own client: the records and the hour index keep every section."""
    hour = HOURS[0]
    drives = [f"d{k}" for k in range(3)]
    for d in drives:
        ledger.write_section(store, "veh-1", d, ledger.INGEST, _ingest(hour, "veh-1", d))
    url = store.url
    names = (ledger.VERDICT, ledger.COMPLIANCE, ledger.LABELS)

    def stage(i: int) -> None:
        own = open_store(url)
        for d in drives:
            ledger.write_section(own, "veh-1", d, names[i], {"by": names[i], "drive": d})

    at_once(len(names), stage)
    for d in drives:
        record = ledger.drive(store, "veh-1", d)
        for name in names:
            assert record.section(name) == {"by": name, "drive": d}
    indexed = {s.drive: s for s in ledger.hour_drives(store, hour)}
    assert sorted(indexed) == drives
    for d in drives:
        assert indexed[d] == ledger.drive(store, "veh-1", d)


def test_the_version_follows_what_curation_consumes(tmp_path):
    store = LocalStore(tmp_path / "lake")
    hour = HOURS[0]
    ingest = _ingest(hour, "veh-1", "d")
    ledger.write_section(store, "veh-1", "d", ledger.INGEST, ingest)
    assert ledger.drive(store, "veh-1", "d").version is None  # not checked yet
    base = {"vehicle": "veh-1", "drive": "d", "manifest_key": ingest["manifest_key"]}
    ledger.write_section(store, "veh-1", "d", ledger.VERDICT, {**base, "verdict": "quarantine"})
    compliance = {**base, "version": "c1", "excluded": False}
    ledger.write_section(store, "veh-1", "d", ledger.COMPLIANCE, compliance)
    assert ledger.drive(store, "veh-1", "d").version is None  # not approved
    ledger.write_section(store, "veh-1", "d", ledger.VERDICT, {**base, "verdict": "warn"})
    first = ledger.drive(store, "veh-1", "d").version
    assert first is not None
    ledger.write_section(store, "veh-1", "d", ledger.LABELS, {"labels": "tables/labels/1"})
    labelled = ledger.drive(store, "veh-1", "d").version
    ledger.write_section(store, "veh-1", "d", ledger.LABELS, {"labels": "tables/labels/2"})
    relabelled = ledger.drive(store, "veh-1", "d").version
    ledger.write_section(store, "veh-1", "d", ledger.COMPLIANCE, {**compliance, "version": "c2"})
    reanonymised = ledger.drive(store, "veh-1", "d").version
    assert len({first, labelled, relabelled, reanonymised}) == 4
    ledger.write_section(store, "veh-1", "d", ledger.COMPLIANCE, {**compliance, "excluded": True})
    assert ledger.drive(store, "veh-1", "d").version is None  # excluded by the geofence
    # the index agrees with the record, section for section
    (indexed,) = ledger.hour_drives(store, hour)
    assert indexed == ledger.drive(store, "veh-1", "d")


def test_a_drive_is_at_a_version_only_while_compliant_and_unchanged(tmp_path):
    """``at_version``: the one test of "is the clip's drive still at its version?" that
    curation (``eligible``) and training (``current_drive``) share."""
    store = LocalStore(tmp_path / "lake")
    assert not ledger.at_version(ledger.drive(store, "veh-1", "d"), None)  # no record
    ingest = _ingest(HOURS[0], "veh-1", "d")
    ledger.write_section(store, "veh-1", "d", ledger.INGEST, ingest)
    assert not ledger.at_version(ledger.drive(store, "veh-1", "d"), None)  # not compliant
    _through_compliance(store, HOURS[0], "veh-1", "d")
    mined = ledger.drive(store, "veh-1", "d").version
    assert ledger.at_version(ledger.drive(store, "veh-1", "d"), mined)
    ledger.write_section(store, "veh-1", "d", ledger.LABELS, {"labels": "tables/labels/1"})
    assert not ledger.at_version(ledger.drive(store, "veh-1", "d"), mined)  # relabelled


def test_a_drive_uploaded_again_in_another_hour_moves_there(tmp_path):
    store = LocalStore(tmp_path / "lake")
    _through_compliance(store, HOURS[0], "veh-1", "d", upload="a")
    first = ledger.drive(store, "veh-1", "d")
    ledger.write_section(store, "veh-1", "d", ledger.INGEST, _ingest(HOURS[1], "veh-1", "d", "b"))
    assert ledger.hour_drives(store, HOURS[0]) == []
    (moved,) = ledger.hour_drives(store, HOURS[1])
    assert moved == ledger.drive(store, "veh-1", "d") and moved.hour == HOURS[1]
    assert moved.compliance == first.compliance  # its other sections moved with it
    assert moved.version is None  # ... but they are of the upload before: not curatable


def test_forgetting_a_drive_removes_its_record_and_its_index_entry(tmp_path):
    store = LocalStore(tmp_path / "lake")
    for d in ("keep", "gone"):
        _through_compliance(store, HOURS[0], "veh-1", d)
    assert ledger.owners(store, "gone") == {"veh-1"}
    audit = forget(store, drive="gone", requested_by="test")
    assert L.ledger_hour_key(HOURS[0]) in audit["rewritten_indexes"]
    assert ledger.drive(store, "veh-1", "gone") is None
    assert [s.drive for s in ledger.hour_drives(store, HOURS[0])] == ["keep"]
    assert not store.exists(L.ledger_key("veh-1", "gone"))
    assert ledger.drive(store, "veh-1", "keep").version is not None
    forget(store, vehicle="veh-1", requested_by="test")
    assert ledger.hour_drives(store, HOURS[0]) == [] and ledger.owners(store, "keep") == set()


def test_a_lake_from_before_the_ledger_is_folded_into_it(tmp_path):
    store = LocalStore(tmp_path / "lake")
    ingest = _ingest(HOURS[0], "veh-1", "d")
    base = {"vehicle": "veh-1", "drive": "d", "manifest_key": ingest["manifest_key"]}
    write_json(store, L.drive_record_key("veh-1", "d"), ingest)
    write_json(store, L.verdict_key("veh-1", "d"), {**base, "verdict": "pass"})
    write_json(store, L.compliance_key("veh-1", "d"), {**base, "version": "c", "excluded": False})
    write_json(store, L.labels_record_key("veh-1", "d"), {**base, "labels": "tables/labels/x"})
    assert ledger.drives_of_day(store, DAY) == []  # an old lake reads as empty ...
    assert ledger.migrate(store) == 1  # ... until migrated
    (state,) = ledger.drives_of_day(store, DAY)
    assert state == ledger.drive(store, "veh-1", "d")
    assert state.labels_key == "tables/labels/x" and state.version is not None
    assert state.ingest == read_json(store, L.drive_record_key("veh-1", "d"))
    assert ledger.migrate(store) == 0  # once
    # a drive ingested anew before the migration keeps that section, gains the others
    write_json(store, L.drive_record_key("veh-1", "e"), _ingest(HOURS[1], "veh-1", "e"))
    write_json(store, L.labels_record_key("veh-1", "e"), {"labels": "tables/labels/e"})
    fresh = {**_ingest(HOURS[1], "veh-1", "e"), "decoder_version": "new"}
    ledger.write_section(store, "veh-1", "e", ledger.INGEST, fresh)
    assert ledger.migrate(store) == 1
    (e,) = ledger.hour_drives(store, HOURS[1])
    assert (e.ingest, e.labels_key) == (fresh, "tables/labels/e")


def test_dataloop_drives_migrates_an_old_lake_and_reads_the_indexes(tmp_path, monkeypatch, capsys):
    import json

    from dataloop.cli import main

    store = LocalStore(tmp_path / "lake")
    write_json(store, L.drive_record_key("veh-1", "d"), _ingest(HOURS[0], "veh-1", "d"))
    monkeypatch.setenv("DATALOOP_LAKE", str(tmp_path / "lake"))
    assert main(["drives", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []  # the old records are not read
    assert main(["drives", "--migrate", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["vehicle"], row["drive"], row["stage"], row["hour"]) == (
        "veh-1",
        "d",
        "ingest",
        HOURS[0],
    )


class KeyCountingStore(CountingStore):
    """Counts pointer swaps per key too."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.swaps: Counter[str] = Counter()

    def swap_pointer(self, key: str, data: bytes, expected: str | None) -> str:
        self.swaps[key] += 1
        return self.inner.swap_pointer(key, data, expected)


def test_an_hour_of_drives_rewrites_its_index_once_and_a_rerun_repairs_it(tmp_path, make_log):
    """A stage writes its sections drive by drive and the hour's index once (an index
    rewritten per drive would cost O(drives²) bytes an hour); an index lost after the records
    were written comes back when the hour runs again, with every drive skipped."""
    from dataloop.fleet.uploader import upload_drive
    from dataloop.ingest.hour import arrival_hours, ingest_hour, upload_days

    store = LocalStore(tmp_path / "lake")
    drives = [f"d-{k}" for k in range(4)]
    for k, drive in enumerate(drives):
        upload_drive(
            store, make_log(vehicle="veh-1", drive=drive, seed=k), vehicle="veh-1", drive=drive
        )
    (hour,) = arrival_hours(store, upload_days(store))
    counting = KeyCountingStore(store)
    assert ingest_hour(counting, hour).summary()["usable"] == 4
    assert counting.swaps[L.ledger_hour_key(hour)] == 1
    assert sum(counting.swaps[L.ledger_key("veh-1", d)] for d in drives) == 4
    assert [s.drive for s in ledger.hour_drives(store, hour)] == drives

    store.delete(L.ledger_hour_key(hour))  # as if the run died before the index was written
    again = ingest_hour(store, hour)
    assert again.summary()["newly_processed"] == 0
    states = ledger.hour_drives(store, hour)
    assert [s.drive for s in states] == drives and all(s.usable for s in states)

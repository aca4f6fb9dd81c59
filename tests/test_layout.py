"""The lake layout is a contract: vehicles, bucket policies, lifecycle rules and deletion
requests depend on these exact strings, and a lake written by one version is read by the
next. These are the keys as the loop has always written them; a change here is a migration."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from dataloop.infra import policies as P
from dataloop.lake import layout as L
from dataloop.quality.retention import NEVER_SWEPT, load_retention
from dataloop.rules import RulesError

HOUR = "2026-05-01-13:00"
SHA = "0123456789abcdef" * 4
HOSTILE = hashlib.sha256(b"raw/../x").hexdigest()


def test_every_key_is_what_the_lake_holds():
    raw = L.RawKeys(date(2026, 5, 1), "veh-1", "d1")
    start, end = datetime(2026, 5, 1, 13, 2, 3, tzinfo=UTC), datetime(2026, 5, 1, 14, tzinfo=UTC)
    assert {
        "log": raw.log,
        "manifest": raw.manifest,
        "telemetry": L.telemetry_key("veh-1", start, end),
        "drive_record": L.drive_record_key("veh-1", "d1"),
        "hour_record": L.hour_record_key(HOUR),
        "table": L.table_key("gnss", "veh-1", "d1", SHA),
        "quarantine": L.quarantine_key(raw.manifest),
        "quarantine_hostile": L.quarantine_key("raw/../x"),
        "verdict": L.verdict_key("veh-1", "d1"),
        "hour_verdicts": L.hour_verdicts_key(HOUR),
        "approved": L.approved_key(HOUR),
        "compliance": L.compliance_key("veh-1", "d1"),
        "frame_pack": L.frame_pack_key("veh-1", "d1", SHA),
        "labels": L.labels_record_key("veh-1", "d1"),
        "day_index": L.day_index_key("2026-05-01"),
        "day_clips": L.day_clips_key("2026-05-01", SHA),
        "embeddings_day": L.embeddings_day_key("2026-05-01"),
        "embeddings": L.embeddings_key("2026-05-01", SHA),
        "faiss": L.faiss_key(SHA[:32]),
        "dataset_latest": L.dataset_latest_key("training"),
        "dataset_version": L.dataset_version_key("training", 7),
        "dataset_manifest": L.dataset_manifest_key("training", SHA[:32]),
        "dataset_superseded": L.dataset_superseded_key("training", SHA[:32]),
        "bundle": L.bundle_key("v1", "weights.bin"),
        "model_latest": L.MODEL_LATEST_KEY,
        "suite": L.suite_key("s1"),
        "results": L.results_key("cand", "prod", SHA, "g1"),
        "gate": L.GATE_RESULT_KEY,
        "production": L.PRODUCTION_KEY,
        "rollout": L.ROLLOUT_KEY,
        "release_history": L.RELEASE_HISTORY_KEY,
        "tuf_metadata": L.tuf_metadata_key("1.root.json"),
        "tuf_target": L.tuf_target_key("driving/release-3/model.json", SHA),
        "release_target": L.release_target(3, "model.json"),
        "lineage": L.node_key("model", "v1"),
        "audit": L.forget_audit_key("2026-05-01T13:02:03+00:00", "abc"),
    } == {
        "log": "raw/date=2026-05-01/vehicle=veh-1/d1.mcap",
        "manifest": "raw/date=2026-05-01/vehicle=veh-1/d1.manifest.json",
        "telemetry": "telemetry/date=2026-05-01/vehicle=veh-1/20260501T130203-20260501T140000.json",
        "drive_record": "ingest/drives/vehicle=veh-1/d1.json",
        "hour_record": "ingest/hours/2026-05-01-1300.json",
        "table": f"tables/gnss/vehicle=veh-1/drive=d1/{SHA[:32]}.parquet",
        "quarantine": "quarantine/date=2026-05-01/vehicle=veh-1/d1.json",
        "quarantine_hostile": f"quarantine/invalid-keys/{HOSTILE}.json",
        "verdict": "quality/drives/vehicle=veh-1/d1.json",
        "hour_verdicts": "quality/hours/2026-05-01-1300.json",
        "approved": "quality/approved/2026-05-01-1300.json",
        "compliance": "compliance/drives/vehicle=veh-1/d1.json",
        "frame_pack": f"derived/frames/vehicle=veh-1/drive=d1/{SHA[:32]}.jpgs",
        "labels": "labeling/drives/vehicle=veh-1/d1.json",
        "day_index": "curation/scenarios/date=2026-05-01.json",
        "day_clips": f"curation/scenarios/date=2026-05-01/{SHA[:32]}.parquet",
        "embeddings_day": "search/embeddings/date=2026-05-01.json",
        "embeddings": f"search/embeddings/date=2026-05-01/{SHA[:32]}.parquet",
        "faiss": f"search/faiss/{SHA[:32]}.faiss",
        "dataset_latest": "datasets/training/latest.json",
        "dataset_version": "datasets/training/versions/000007.json",
        "dataset_manifest": f"datasets/training/manifests/{SHA[:32]}.parquet",
        "dataset_superseded": f"datasets/training/superseded/{SHA[:32]}.json",
        "bundle": "models/driving/v1/weights.bin",
        "model_latest": "models/driving/latest.json",
        "suite": "simulation/suites/s1.json",
        "results": f"simulation/results/{SHA[:16]}/cand-vs-prod-g1.json",
        "gate": "simulation/gate/latest.json",
        "production": "releases/production.json",
        "rollout": "releases/rollout.json",
        "release_history": "releases/history.json",
        "tuf_metadata": "releases/tuf/metadata/1.root.json",
        "tuf_target": f"releases/tuf/targets/driving/release-3/{SHA}.model.json",
        "release_target": "driving/release-3/model.json",
        "lineage": "lineage/model/v1.json",
        "audit": "audit/forget/2026-05-01T130203+0000-abc.json",
    }


def test_hour_and_day_keys():
    assert L.utc_hour_key(datetime(2026, 5, 1, 13, 59, tzinfo=UTC)) == HOUR
    assert L.parse_hour(HOUR) == datetime(2026, 5, 1, 13, tzinfo=UTC)
    assert L.hour_slug(HOUR) == "2026-05-01-1300"
    hours = L.day_hours("2026-05-01")
    assert len(hours) == 24 and hours[0] == "2026-05-01-00:00" and hours[-1] == "2026-05-01-23:00"
    assert L.raw_day_prefix(date(2026, 5, 1)) == L.raw_day_prefix("2026-05-01")


def test_keys_parse_back():
    raw = L.RawKeys(date(2026, 5, 1), "veh-1", "d1")
    assert L.parse_raw_key(raw.manifest) == L.ParsedRawKey("2026-05-01", "veh-1", "d1", True)
    assert L.raw_key_day(raw.log) == "2026-05-01"
    assert L.is_manifest_key(raw.manifest) and not L.is_manifest_key(raw.log)
    assert L.key_digest(L.day_clips_key("2026-05-01", SHA)) == SHA[:32]
    for key in (L.drive_record_key("v", "d"), L.labels_record_key("v", "d")):
        assert L.parse_drive_record_key(key) == ("v", "d")
    assert L.parse_drive_record_key("ingest/hours/x.json") is None
    days = [L.day_index_key("2026-05-01"), L.day_clips_key("2026-05-01", SHA)]
    assert L.scenario_index_days(days) == ["2026-05-01"]
    assert L.is_embeddings_day_key(L.embeddings_day_key("2026-05-01"))
    assert not L.is_embeddings_day_key(L.embeddings_key("2026-05-01", SHA))
    names = [L.dataset_latest_key("a"), L.dataset_version_key("b", 1)]
    assert L.dataset_names(names) == ["a"]


def test_a_subject_owns_the_keys_under_its_segments():
    assert L.belongs_to(L.table_key("gnss", "veh-1", "d1", SHA), "veh-1", "d1")
    assert L.belongs_to(L.drive_record_key("veh-1", "d1"), "veh-1", "d1")
    assert not L.belongs_to(L.drive_record_key("veh-1", "d10"), "veh-1", "d1")
    assert not L.belongs_to(L.drive_record_key("veh-10", "d1"), "veh-1")
    assert L.in_vehicle_prefix(
        L.telemetry_key("veh-1", datetime.now(UTC), datetime.now(UTC)), "veh-1"
    )


def test_every_prefix_is_in_exactly_one_zone():
    prefixes = [p for z in L.ZONES for p in z.prefixes]
    assert len(prefixes) == len(set(prefixes)) and all(p.endswith("/") for p in prefixes)
    assert not [(a, b) for a in prefixes for b in prefixes if a != b and b.startswith(a)]
    assert len({z.name for z in L.ZONES}) == len(L.ZONES)
    # every key above lies in a zone
    keys = [L.drive_record_key("v", "d"), L.frame_pack_key("v", "d", SHA), L.GATE_RESULT_KEY]
    keys += [L.forget_audit_key("t", "x"), L.faiss_key("x"), L.node_key("model", "x")]
    assert all(k.startswith(tuple(prefixes)) for k in keys)
    assert set(NEVER_SWEPT) == {p for z in L.ZONES if not z.aged for p in z.prefixes}


def test_the_bucket_lifecycle_covers_every_zone():
    """A prefix without a lifecycle rule keeps noncurrent versions forever (and with them the
    bytes a deletion request removed)."""
    covered = {p for z in P.zones() for p in z.prefixes}
    assert covered == {p for z in L.ZONES for p in z.prefixes}
    assert [z.name for z in P.zones()] == [z.name for z in L.ZONES]


def _retention(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "retention.yaml"
    path.write_text(text)
    return path


def test_retention_names_only_the_layouts_aged_zones(tmp_path):
    assert set(load_retention(Path("assets/quality/retention.yaml"))) <= {
        z.name for z in L.aged_zones()
    }
    path = _retention(
        tmp_path,
        "zones:\n  raw: {prefixes: [raw/], days: 1}\n  tabels: {prefixes: [tables/], days: 1}\n",
    )
    with pytest.raises(RulesError) as err:
        load_retention(path)
    message = str(err.value)
    assert str(path) in message or "retention.yaml" in message
    assert "line 3" in message and "unknown zone 'tabels'" in message
    assert "allowed: raw, derived, quarantine, telemetry, dagster" in message


def test_retention_prefixes_are_the_layouts(tmp_path):
    path = _retention(tmp_path, "zones:\n  derived: {prefixes: [tables/], days: 1}\n")
    with pytest.raises(
        RulesError,
        match="zone 'derived': prefixes tables/; the lake layout's are tables/, derived/",
    ):
        load_retention(path)


def test_cohorts_and_their_assignment_paths():
    """The car computes its cohort as the director does (the director's buckets of #8)."""
    import hashlib

    assert L.cohort_role(7) == "cohort-07"
    assert L.assignment_target(7) == "assignments/cohort-07.json"
    for i in range(200):
        vehicle = f"veh-{i:04d}"
        assert L.cohort(vehicle) == int(hashlib.sha256(vehicle.encode()).hexdigest(), 16) % 100
    assert {L.cohort(f"veh-{i:04d}") for i in range(2000)} == set(range(L.COHORTS))


def test_the_ledger_keys():
    assert L.ledger_key("veh-1", "d1") == "ledger/drives/vehicle=veh-1/d1.json"
    assert L.ledger_hour_key(HOUR) == "ledger/hours/2026-05-01-1300.json"
    assert L.parse_ledger_hour_key(L.ledger_hour_key(HOUR)) == HOUR
    assert L.parse_ledger_hour_key(L.ledger_key("veh-1", "d1")) is None
    assert L.parse_drive_record_key(L.ledger_key("veh-1", "d1")) == ("veh-1", "d1")
    assert L.belongs_to(L.ledger_key("veh-1", "d1"), "veh-1", "d1")
    assert L.LEDGER_HOURS in L.HOUR_INDEXES  # a deletion request rewrites it
    assert L.ledger_key("v", "d").startswith(L.zone("pointers").prefixes)

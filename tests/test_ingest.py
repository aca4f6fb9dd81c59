"""Decoding and hour ingest on logs written by the writer, on both backends."""

from __future__ import annotations

import pytest
from mcap.reader import make_reader

from dataloop.fleet import contract
from dataloop.fleet.uploader import upload_drive
from dataloop.ingest import decode as decode_module
from dataloop.ingest.catalog import connect_tables, drive_records
from dataloop.ingest.decode import decode_log
from dataloop.ingest.frames import read_frame
from dataloop.lake.hashing import sha256_bytes, sha256_file
from tests.helpers import ingest_everything


def test_decode_matches_the_mcap_library(make_log):
    path = make_log(seconds=3.0, seed=5)
    with path.open("rb") as f:
        log = decode_log(f, vehicle="veh-1", drive="drive-1")
    with path.open("rb") as f:
        expected: dict[str, int] = {}
        for _, channel, _ in make_reader(f).iter_messages():
            expected[channel.topic] = expected.get(channel.topic, 0) + 1
    assert dict(log.messages) == expected
    assert (log.sha256, log.size) == sha256_file(path)
    assert not log.truncated
    t = log.tables
    assert t["imu"].num_rows == expected[contract.IMU.topic]
    assert t["frames"].num_rows == expected[contract.CAMERA.topic]
    assert t["vehicle_state"].column("speed_mps").to_pylist()[0] > 0
    assert set(t["vehicle_state"].column("gear").to_pylist()) == {"drive"}
    assert set(t["imu"].column("vehicle_id").to_pylist()) == {"veh-1"}
    ts = t["imu"].column("t").to_pylist()
    assert ts == sorted(ts) and len(set(ts)) == len(ts)


def test_ingest_hour_decodes_into_queryable_tables(store, make_log):
    for i in range(2):
        upload_drive(store, make_log(drive=f"drive-{i}", seed=i), vehicle="veh-1")
    reports = ingest_everything(store)
    drives = [d for r in reports.values() for d in r.drives]
    assert sorted(d["drive"] for d in drives) == ["drive-0", "drive-1"]
    assert {d["status"] for d in drives} == {"ingested"}

    con = connect_tables(store)
    rows = con.sql(
        "SELECT drive_id, count(*), avg(speed_mps) FROM vehicle_state GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert [(r[0], r[1]) for r in rows] == [("drive-0", 200), ("drive-1", 200)]
    assert all(r[2] > 0 for r in rows)
    n_imu = con.sql("SELECT count(*) FROM imu").fetchall()[0][0]
    assert n_imu == 800

    # Every frame index row locates its JPEG in the raw log.
    record = next(d for d in drive_records(store) if d["drive"] == "drive-0")
    frames = con.sql("SELECT * FROM frames WHERE drive_id = 'drive-0' ORDER BY t").to_arrow_table()
    for row in frames.to_pylist()[::7]:
        jpeg = read_frame(store, record["log_key"], row)
        assert jpeg[:2] == b"\xff\xd8" and sha256_bytes(jpeg) == row["jpeg_sha256"]


def test_ingest_is_idempotent_and_rewrites_nothing(store, make_log):
    upload_drive(store, make_log(), vehicle="veh-1")
    first = ingest_everything(store)
    snapshot = {o.key: (o.etag, o.size) for o in store.list("tables/")}
    second = ingest_everything(store)
    assert [r.data_version for r in first.values()] == [r.data_version for r in second.values()]
    assert all(d.get("skipped") for r in second.values() for d in r.drives)
    assert {o.key: (o.etag, o.size) for o in store.list("tables/")} == snapshot


def test_a_new_decoder_version_redecodes_and_keeps_old_tables(store, make_log, monkeypatch):
    upload_drive(store, make_log(), vehicle="veh-1")
    before = ingest_everything(store)
    old_tables = {o.key for o in store.list("tables/")}
    monkeypatch.setattr(decode_module, "DECODER_VERSION", "test-2")
    after = ingest_everything(store)
    drive = next(d for r in after.values() for d in r.drives)
    assert not drive.get("skipped") and drive["decoder_version"].startswith("test-2.adapters-")
    assert [r.data_version for r in before.values()] != [r.data_version for r in after.values()]
    # Same bytes decoded the same way: same content-addressed files, nothing overwritten.
    assert old_tables <= {o.key for o in store.list("tables/")}


def test_unchunked_and_uncompressed_logs_decode_and_locate_frames(store, tmp_path):
    from mcap.writer import CompressionType

    from tests.helpers import commit_raw, write_minimal_log

    variants = {
        "unchunked": {"use_chunking": False},
        "uncompressed": {"compression": CompressionType.NONE},
        "lz4": {"compression": CompressionType.LZ4},
    }
    for drive, options in variants.items():
        path = write_minimal_log(tmp_path / f"{drive}.mcap", drive=drive, **options)
        commit_raw(store, path, vehicle="veh-1", drive=drive)
    records = {d["drive"]: d for r in ingest_everything(store).values() for d in r.drives}
    con = connect_tables(store)
    for drive in variants:
        assert records[drive]["status"] == "ingested", records[drive]
        assert records[drive]["tables"]["imu"]["rows"] == 100
        rows = con.sql(f"SELECT * FROM frames WHERE drive_id = '{drive}'").to_arrow_table()
        for row in rows.to_pylist():
            jpeg = read_frame(store, records[drive]["log_key"], row)
            assert sha256_bytes(jpeg) == row["jpeg_sha256"] and jpeg[:2] == b"\xff\xd8"


def test_an_hour_shards_by_vehicle_evenly_and_never_empty(monkeypatch):
    """A vehicle's uploads stay in one shard, the busiest vehicles spread first, no more
    shards than vehicles (or than the decode pool allows), and always one."""
    from datetime import UTC, date, datetime

    from dataloop.infra.executors import hour_shards
    from dataloop.infra.pools import POOLS
    from dataloop.ingest.hour import shard_uploads
    from dataloop.lake import layout as L
    from dataloop.lake.store import ObjectInfo

    def upload(vehicle: str, k: int) -> ObjectInfo:
        key = L.RawKeys(date(2026, 5, 1), vehicle, f"d{k}").manifest
        return ObjectInfo(key, 1, datetime(2026, 5, 1, 13, tzinfo=UTC), "e")

    counts = {"veh-a": 4, "veh-b": 3, "veh-c": 2, "veh-d": 1, "veh-e": 1}
    uploads = [upload(v, k) for v, n in counts.items() for k in range(n)]
    shards = shard_uploads(uploads, 3)
    vehicles = [{L.parse_raw_key(u.key).vehicle for u in s} for s in shards]
    assert sorted(len(s) for s in shards) == [3, 4, 4]  # 11 uploads over 3 shards
    assert sum(len(v) for v in vehicles) == len(counts)  # no vehicle in two shards
    assert sorted(u.key for s in shards for u in s) == sorted(u.key for u in uploads)
    assert len(shard_uploads(uploads, 16)) == len(counts)
    assert shard_uploads([], 4) == [[]]

    monkeypatch.delenv("DATALOOP_HOUR_SHARDS", raising=False)
    monkeypatch.delenv("DATALOOP_EXECUTOR", raising=False)
    assert hour_shards() == 1
    monkeypatch.setenv("DATALOOP_EXECUTOR", "celery")
    assert hour_shards() == POOLS["decode"]
    monkeypatch.setenv("DATALOOP_HOUR_SHARDS", "1000")
    assert hour_shards() == POOLS["decode"]
    monkeypatch.setenv("DATALOOP_EXECUTOR", "spark")
    with pytest.raises(ValueError, match="in_process, multiprocess, k8s, celery"):
        hour_shards()

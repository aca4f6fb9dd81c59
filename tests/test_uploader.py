"""The vehicle's upload protocol, on every backend (radosgw included; with a vehicle's own
least-privilege identity in tests/test_radosgw.py)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import pytest

from dataloop.fleet.uploader import DriveConflict, upload_drive
from dataloop.lake.hashing import sha256_file
from dataloop.lake.layout import InvalidId
from dataloop.lake.store import ObjectStore
from tests.conftest import STORE_KINDS, store_of

PART = 5 * 1024 * 1024  # the smallest part S3 accepts


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path) -> ObjectStore:
    """The upload protocol holds on every backend, radosgw included."""
    return store_of(request.param, request, tmp_path)


class Interrupted(ConnectionError):
    pass


class FlakyStore:
    """Delegates to a real store but drops the connection after ``parts_ok`` parts."""

    def __init__(self, store, parts_ok: int):
        self._store, self._left = store, parts_ok

    def put_part(self, *args, **kwargs):
        if self._left == 0:
            raise Interrupted("link lost")
        self._left -= 1
        return self._store.put_part(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._store, name)


@pytest.fixture
def big_file(tmp_path):
    path = tmp_path / "big-drive.mcap"
    path.write_bytes(os.urandom(PART * 3 + 1000))
    return path


def test_upload_writes_log_then_manifest(store, make_log):
    path = make_log()
    now = datetime(2026, 11, 25, 23, 59, tzinfo=UTC)
    result = upload_drive(store, path, vehicle="veh-1", drive="drive-1", now=now)
    assert result.status == "uploaded"
    assert result.log_key == "raw/date=2026-11-25/vehicle=veh-1/drive-1.mcap"
    assert result.manifest_key == "raw/date=2026-11-25/vehicle=veh-1/drive-1.manifest.json"
    manifest = json.loads(store.get(result.manifest_key))
    sha, size = sha256_file(path)
    assert (manifest["sha256"], manifest["size"]) == (sha, size)
    assert manifest["vehicle"] == "veh-1" and manifest["drive"] == "drive-1"
    assert manifest["start"] < manifest["end"]
    assert manifest["software_version"] == "dataloop-sim"
    assert store.get(result.log_key) == path.read_bytes()


def test_reupload_is_a_noop_even_the_next_day(store, make_log):
    path = make_log()
    day1 = datetime(2026, 11, 25, 12, tzinfo=UTC)
    first = upload_drive(store, path, vehicle="veh-1", drive="drive-1", now=day1)
    again = upload_drive(store, path, vehicle="veh-1", drive="drive-1", now=day1)
    next_day = upload_drive(
        store, path, vehicle="veh-1", drive="drive-1", now=day1 + timedelta(days=1)
    )
    assert again.status == next_day.status == "already_uploaded"
    assert again.manifest_key == next_day.manifest_key == first.manifest_key
    assert len([o for o in store.list("raw/") if o.key.endswith(".mcap")]) == 1


def test_different_file_under_same_drive_is_refused(store, make_log):
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    original = make_log(seed=1)
    upload_drive(store, original, vehicle="veh-1", drive="drive-1", now=now)
    before = {o.key: store.get(o.key) for o in store.list("raw/")}
    with pytest.raises(DriveConflict, match="different"):
        upload_drive(store, make_log(seed=2), vehicle="veh-1", drive="drive-1", now=now)
    assert {o.key: store.get(o.key) for o in store.list("raw/")} == before


def test_interrupted_upload_resumes_where_it_stopped(store, big_file):
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    with pytest.raises(Interrupted):
        upload_drive(FlakyStore(store, 2), big_file, vehicle="veh-1", now=now, part_size=PART)
    # Nothing is committed: no manifest, no log object; the parts wait on the server.
    assert list(store.list("raw/")) == []
    result = upload_drive(store, big_file, vehicle="veh-1", now=now, part_size=PART)
    assert result.status == "resumed"
    assert (result.parts_reused, result.parts_sent) == (2, 2)
    assert store.get(result.log_key) == big_file.read_bytes()
    assert json.loads(store.get(result.manifest_key))["sha256"] == sha256_file(big_file)[0]


def test_resume_reuploads_parts_that_do_not_match(store, big_file):
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    with pytest.raises(Interrupted):
        upload_drive(FlakyStore(store, 2), big_file, vehicle="veh-1", now=now, part_size=PART)
    data = bytearray(big_file.read_bytes())
    data[10] ^= 0xFF  # the file changed on disk between attempts: part 1 no longer matches
    big_file.write_bytes(bytes(data))
    result = upload_drive(store, big_file, vehicle="veh-1", now=now, part_size=PART)
    assert (result.parts_reused, result.parts_sent) == (1, 3)
    assert store.get(result.log_key) == bytes(data)


@pytest.mark.parametrize(
    "vehicle,drive", [("../x", "d"), ("v", "../x"), ("v/w", "d"), ("v", ".x"), ("v", "a b")]
)
def test_ids_that_could_escape_are_refused(store, make_log, vehicle, drive):
    with pytest.raises(InvalidId):
        upload_drive(store, make_log(), vehicle=vehicle, drive=drive)
    assert list(store.list("")) == []

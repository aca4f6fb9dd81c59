"""The object-store contract, run against every backend: a folder, and S3 over real HTTP on
moto and on Ceph radosgw."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from dataloop.lake import ObjectExists, ObjectNotFound, PreconditionFailed
from dataloop.lake.hashing import HashingReader, sha256_bytes
from dataloop.lake.local import LocalStore
from dataloop.lake.pointers import read_json, update_json
from dataloop.lake.s3 import S3Store
from dataloop.lake.store import PART_SIZE, ObjectStore, open_store
from tests.conftest import STORE_KINDS, store_of
from tests.helpers import at_once

WRITERS = 6
ROUNDS = 4


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """The contract holds on every backend, radosgw included."""
    return store_of(request.param, request, tmp_path)


def _twin(store: ObjectStore) -> ObjectStore:
    """The same lake through its own client (own connections), as a second process has."""
    if isinstance(store, S3Store):
        return S3Store(store.bucket, store.prefix)
    return store


def _race(store: ObjectStore, write) -> tuple[list[int], list[Exception]]:
    """``WRITERS`` writers call ``write(store, n)`` at the same instant; (winners, losses)."""
    stores = [_twin(store) for _ in range(WRITERS)]

    def attempt(n: int) -> int | Exception:
        try:
            write(stores[n], n)
        except (PreconditionFailed, ObjectExists) as e:
            return e
        return n

    outcomes = at_once(WRITERS, attempt)
    return [o for o in outcomes if isinstance(o, int)], [
        o for o in outcomes if isinstance(o, Exception)
    ]


def test_write_once(store):
    store.put("a/b.bin", b"first")
    with pytest.raises(ObjectExists):
        store.put("a/b.bin", b"second")
    assert store.get("a/b.bin") == b"first"
    assert store.head("a/b.bin").size == 5
    assert store.head("a/missing") is None
    with pytest.raises(ObjectNotFound):
        store.get("a/missing")


def test_large_objects_stream_both_ways(store):
    size = PART_SIZE * 2 + 12345
    data = os.urandom(size)
    info = store.put_stream("big/blob", io.BytesIO(data))
    assert info.size == size
    with pytest.raises(ObjectExists):
        store.put_stream("big/blob", io.BytesIO(b"x" * size))
    reader = HashingReader(store.open("big/blob"))
    first = reader.read(1000)
    assert first == data[:1000]
    reader.drain()
    assert reader.bytes_read == size and reader.hexdigest() == sha256_bytes(data)
    assert store.get_range("big/blob", PART_SIZE - 3, 6) == data[PART_SIZE - 3 : PART_SIZE + 3]


def test_listing_is_ordered_and_takes_a_cursor(store):
    keys = ["raw/x/2", "raw/x/10", "raw/x/1", "raw/y/1", "rawz/1", "other/1"]
    for k in keys:
        store.put(k, k.encode())
    listed = [o.key for o in store.list("raw/")]
    assert listed == sorted(k for k in keys if k.startswith("raw/"))
    assert [o.key for o in store.list("raw/", start_after="raw/x/10")] == [
        "raw/x/2",
        "raw/y/1",
    ]
    assert [o.key for o in store.list("raw/x/1")] == ["raw/x/1", "raw/x/10"]
    assert all(o.last_modified.tzinfo is not None for o in store.list("raw/"))
    assert list(store.list("nothing/")) == []


def test_pointer_compare_and_swap(store):
    assert store.read_pointer("ptr/current") is None
    token = store.swap_pointer("ptr/current", b"v1", None)
    with pytest.raises(PreconditionFailed):
        store.swap_pointer("ptr/current", b"v1b", None)  # someone created it already
    token2 = store.swap_pointer("ptr/current", b"v2", token)
    with pytest.raises(PreconditionFailed):
        store.swap_pointer("ptr/current", b"stale", token)  # lost the race
    assert store.read_pointer("ptr/current") == (b"v2", token2)


def test_json_pointer_update_retries_on_concurrent_writer(store):
    update_json(store, "ptr/n.json", lambda cur: {"n": 1})
    calls = []

    def bump(cur):
        if not calls:  # another writer sneaks in between our read and our write
            store.swap_pointer("ptr/n.json", b'{"n": 10}', store.read_pointer("ptr/n.json")[1])
        calls.append(cur)
        return {"n": cur["n"] + 1}

    update_json(store, "ptr/n.json", bump)
    assert read_json(store, "ptr/n.json") == {"n": 11}
    assert len(calls) == 2


def test_multipart_upload_can_be_found_and_resumed(store):
    part1 = os.urandom(PART_SIZE)
    upload_id = store.start_multipart("mp/obj")
    p1 = store.put_part("mp/obj", upload_id, 1, part1)
    assert store.find_multipart("mp/obj") == [upload_id]
    assert store.find_multipart("mp/other") == []
    listed = store.list_parts("mp/obj", upload_id)
    assert [(p.number, p.size, p.etag) for p in listed] == [(1, PART_SIZE, p1.etag)]
    p2 = store.put_part("mp/obj", upload_id, 2, b"tail")
    info = store.complete_multipart("mp/obj", upload_id, [p1, p2])
    assert info.size == PART_SIZE + 4
    assert store.get("mp/obj") == part1 + b"tail"
    assert store.find_multipart("mp/obj") == []
    again = store.start_multipart("mp/obj")
    p = store.put_part("mp/obj", again, 1, b"other")
    with pytest.raises(ObjectExists):
        store.complete_multipart("mp/obj", again, [p])
    assert store.get("mp/obj") == part1 + b"tail"


@pytest.mark.parametrize("key", ["../escape", "a/../../b", "/abs", "a//b", ".dataloop-internal/x"])
def test_local_store_rejects_keys_that_escape(tmp_path, key):
    store = LocalStore(tmp_path / "lake")
    with pytest.raises(ValueError):
        store.put(key, b"x")
    assert not (tmp_path / "escape").exists()


def test_open_store_picks_backend_from_url(tmp_path, s3_lake, monkeypatch):
    monkeypatch.setenv("DATALOOP_LAKE", str(tmp_path / "l"))
    assert isinstance(open_store(), LocalStore)
    s3 = open_store(s3_lake)
    assert s3.url.startswith("s3://") and s3.prefix == "dataloop/"
    s3.put("k", b"v")
    assert [o.key for o in s3.list("")] == ["k"]


def test_racing_writers_one_wins_the_others_lose_loudly(store):
    """Compare-and-swap and write-once under a real race: on radosgw 16 this holds only
    because If-Match carries the ETag unquoted (quoted, every swap would lose)."""
    for r in range(ROUNDS):
        key = f"ptr/race-{r}"
        token = store.swap_pointer(key, b"base", None)
        wins, losses = _race(store, lambda s, n, k=key, t=token: s.swap_pointer(k, b"w%d" % n, t))
        assert len(wins) == 1 and len(losses) == WRITERS - 1, (wins, losses)
        assert all(isinstance(e, PreconditionFailed) for e in losses)
        assert store.read_pointer(key)[0] == b"w%d" % wins[0]  # the winner's bytes, whole

        once = f"once/race-{r}"
        wins, losses = _race(store, lambda s, n, k=once: s.put(k, b"w%d" % n))
        assert len(wins) == 1 and all(isinstance(e, ObjectExists) for e in losses)
        assert store.get(once) == b"w%d" % wins[0]

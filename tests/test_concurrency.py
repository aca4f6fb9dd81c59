"""Concurrency: two ingests of the same hour at once end as one; pointer updates are
compare-and-swap, so concurrent read-modify-writes lose nothing (both backends)."""

from __future__ import annotations

import pytest

from dataloop.fleet.uploader import upload_drive
from dataloop.ingest.hour import arrival_hours, ingest_hour, upload_days
from dataloop.lake import ledger
from dataloop.lake.pointers import read_json, update_json
from dataloop.lake.store import PreconditionFailed, open_store
from tests.faults.loop import audit
from tests.helpers import at_once
from tests.test_crash import _strip


def test_lost_update_is_refused(store):
    store.swap_pointer("p/counter.json", b"0", None)
    data, token = store.read_pointer("p/counter.json")
    store.swap_pointer("p/counter.json", b"1", token)  # writer A wins
    with pytest.raises(PreconditionFailed):
        store.swap_pointer("p/counter.json", b"1", token)  # writer B read the same value
    with pytest.raises(PreconditionFailed):
        store.swap_pointer("p/counter.json", b"9", None)  # "create" over an existing pointer
    assert store.read_pointer("p/counter.json")[0] == b"1"


def test_concurrent_read_modify_writes_lose_nothing(store):
    url = store.url

    def bump(i: int) -> None:
        own = open_store(url)  # a writer of its own, as another process would be
        for _ in range(3):
            update_json(own, "p/seen.json", lambda v, i=i: {"n": (v or {"n": 0})["n"] + 1}, 200)

    at_once(4, bump)
    assert read_json(store, "p/seen.json") == {"n": 12}


def test_two_ingests_of_the_same_hour_at_once(store, make_log):
    logs = [("veh-4", f"s-{k}", make_log(vehicle="veh-4", drive=f"s-{k}", seed=k)) for k in (1, 2)]
    for vehicle, drive, path in logs:
        upload_drive(store, path, vehicle=vehicle, drive=drive)
    (hour,) = arrival_hours(store, upload_days(store))
    url = store.url

    reports = at_once(2, lambda i: ingest_hour(open_store(url), hour))

    assert [r.count("ingested") for r in reports] == [2, 2]
    result = audit(store, logs, curate=False)
    assert (result.processed, result.lost, result.duplicated, result.partial) == (2, [], [], [])
    records = [_strip(ledger.section(store, v, d, ledger.INGEST)) for v, d, _ in logs]
    again = ingest_hour(store, hour)  # a third run afterwards finds both done, and skips
    assert all(d.get("skipped") for d in again.drives)
    found = [_strip({k: v for k, v in d.items() if k != "skipped"}) for d in again.drives]
    assert sorted(found, key=lambda d: d["drive"]) == records

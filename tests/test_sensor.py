"""The upload sensor: one run per arrival hour, no second run for the same manifests, and a
cursor that advances (real sensor definition, real instance, build_sensor_context)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from dataloop.defs.ingest.sensors import raw_upload_sensor
from dataloop.defs.resources import LakeResource
from dataloop.ingest.discovery import ArrivalCursor, find_new_manifests
from dataloop.lake.layout import RawKeys
from dataloop.lake.local import LocalStore

# Half past the previous hour: always in the past, whatever minute the tests run at.
NOW = (datetime.now(UTC) - timedelta(hours=1)).replace(minute=30, second=0, microsecond=0)


def _arrive(store: LocalStore, vehicle: str, drive: str, at: datetime) -> str:
    """A committed manifest whose LastModified is ``at``."""
    keys = RawKeys(at.date(), vehicle, drive)
    store.put(keys.manifest, b"{}")
    os.utime(store.path(keys.manifest), (at.timestamp(), at.timestamp()))
    return keys.manifest


@pytest.fixture
def lake(tmp_path):
    return LocalStore(tmp_path / "lake")


def _evaluate(lake, cursor, instance):
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"lake": LakeResource(url=str(lake.root))}
    ) as ctx:
        result = raw_upload_sensor(ctx)
    return result.run_requests, result.cursor


def test_one_run_per_hour_and_none_twice(lake):
    hour_a = NOW - timedelta(hours=2)
    hour_b = NOW - timedelta(minutes=20)
    _arrive(lake, "veh-1", "d1", hour_a)
    _arrive(lake, "veh-2", "d2", hour_a + timedelta(minutes=5))
    _arrive(lake, "veh-1", "d3", hour_b)
    lake.put("raw/date=2026-01-01/vehicle=veh-1/not-a-manifest.mcap", b"x")

    with dg.instance_for_test() as instance:
        requests, cursor = _evaluate(lake, None, instance)
        assert sorted(r.partition_key for r in requests) == sorted(
            {hour_a.strftime("%Y-%m-%d-%H:00"), hour_b.strftime("%Y-%m-%d-%H:00")}
        )
        assert len({r.run_key for r in requests}) == len(requests)
        by_hour = {r.partition_key: r for r in requests}
        assert by_hour[hour_a.strftime("%Y-%m-%d-%H:00")].tags["dataloop/new_manifests"] == "2"

        again, cursor2 = _evaluate(lake, cursor, instance)
        assert again == []

        # A new upload in hour b: one run, for hour b only, with a new run key.
        _arrive(lake, "veh-3", "d4", hour_b + timedelta(minutes=1))
        new, cursor3 = _evaluate(lake, cursor2, instance)
        assert [r.partition_key for r in new] == [hour_b.strftime("%Y-%m-%d-%H:00")]
        assert new[0].run_key not in {r.run_key for r in requests}
        assert (
            ArrivalCursor.from_json(cursor3).high_water
            > ArrivalCursor.from_json(cursor2).high_water
        )

        # A lost cursor re-plans the same batch with the same run key: Dagster dedupes it.
        # (Hour b now holds a bigger batch: a new key, and the run skips what is done.)
        replay, _ = _evaluate(lake, None, instance)
        key_a = hour_a.strftime("%Y-%m-%d-%H:00")
        assert {r.run_key for r in replay if r.partition_key == key_a} == {by_hour[key_a].run_key}


def test_late_manifest_inside_the_overlap_is_still_found(lake):
    _arrive(lake, "veh-1", "d1", NOW - timedelta(minutes=1))
    _, cursor = find_new_manifests(lake, ArrivalCursor(), now=NOW)
    # Listed later, but stamped a little before the high-water mark (slow upload, skew).
    late = _arrive(lake, "veh-2", "d2", NOW - timedelta(minutes=5))
    new, cursor2 = find_new_manifests(lake, cursor, now=NOW)
    assert [o.key for o in new] == [late]
    assert find_new_manifests(lake, cursor2, now=NOW)[0] == []


def test_sensor_lists_only_recent_days(lake):
    old = NOW - timedelta(days=5)
    _arrive(lake, "veh-1", "old", old)
    listed_prefixes = []
    real_list = lake.list

    def spy(prefix, start_after=None):
        listed_prefixes.append(prefix)
        return real_list(prefix, start_after)

    lake.list = spy
    new, _ = find_new_manifests(lake, ArrivalCursor(), now=NOW, late_days=1)
    assert new == []
    assert len(listed_prefixes) == 3 and all(p.startswith("raw/date=") for p in listed_prefixes)
    # A wider late-arrival window reaches it.
    new, _ = find_new_manifests(lake, ArrivalCursor(), now=NOW, late_days=5)
    assert [o.key for o in new] == [RawKeys(old.date(), "veh-1", "old").manifest]


def test_cursor_round_trips():
    c = ArrivalCursor(NOW, frozenset({"a", "b"}))
    assert ArrivalCursor.from_json(c.to_json()) == c
    assert json.loads(c.to_json())["seen"] == ["a", "b"]

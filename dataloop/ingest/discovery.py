"""Finding new uploads without listing the whole bucket.

Only the recent upload days are listed (today, yesterday and ``late_days`` more). The cursor is
a LastModified high-water mark with an overlap window, plus the manifest keys already seen
inside that window: a manifest whose LastModified lands a little behind one already seen
(clock skew, a slow listing) is still found, and nothing is found twice.
"""

from __future__ import annotations

import json
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from dataloop.lake import layout as L
from dataloop.lake.hashing import sha256_json
from dataloop.lake.pointers import read_json
from dataloop.lake.store import ObjectInfo, ObjectStore

OVERLAP = timedelta(minutes=15)
FUTURE_SKEW = timedelta(minutes=5)
RECONCILE_GRACE = timedelta(hours=1)
"""How long a manifest is left to its notification before the reconciling listing requests it."""


@dataclass(frozen=True)
class ArrivalCursor:
    high_water: datetime | None = None
    seen: frozenset[str] = field(default_factory=frozenset)

    def to_json(self) -> str:
        return json.dumps(
            {
                "high_water": self.high_water.isoformat() if self.high_water else None,
                "seen": sorted(self.seen),
            }
        )

    @classmethod
    def from_json(cls, text: str | None) -> ArrivalCursor:
        if not text:
            return cls()
        raw = json.loads(text)
        hw = raw.get("high_water")
        return cls(datetime.fromisoformat(hw) if hw else None, frozenset(raw.get("seen", [])))


def recent_days(now: datetime, late_days: int) -> list[str]:
    return [L.raw_day_prefix((now - timedelta(days=d)).date()) for d in range(late_days + 2)]


def find_new_manifests(
    store: ObjectStore,
    cursor: ArrivalCursor,
    *,
    now: datetime | None = None,
    late_days: int = 1,
    overlap: timedelta = OVERLAP,
) -> tuple[list[ObjectInfo], ArrivalCursor]:
    """New committed manifests since ``cursor``, and the cursor to store next."""
    now = now or datetime.now(UTC)
    floor = cursor.high_water - overlap if cursor.high_water else None
    listed: list[ObjectInfo] = []
    for prefix in recent_days(now, late_days):
        listed.extend(o for o in store.list(prefix) if L.is_manifest_key(o.key))
    # Objects "from the future" (clock skew) wait for a later tick rather than move the mark.
    listed = [o for o in listed if o.last_modified <= now + FUTURE_SKEW]
    new = [
        o
        for o in listed
        if o.key not in cursor.seen and (floor is None or o.last_modified >= floor)
    ]
    marks = [o.last_modified for o in listed] + [cursor.high_water] * bool(cursor.high_water)
    if not marks:
        return [], cursor
    high_water = max(marks)
    keep_from = high_water - overlap
    seen = frozenset(o.key for o in listed if o.last_modified >= keep_from)
    return sorted(new, key=lambda o: (o.last_modified, o.key)), ArrivalCursor(high_water, seen)


def unrecorded_manifests(
    store: ObjectStore,
    *,
    now: datetime | None = None,
    late_days: int = 1,
    grace: timedelta = RECONCILE_GRACE,
) -> list[ObjectInfo]:
    """The reconciling listing of the notification path: committed manifests of the recent
    upload days, older than ``grace``, that their arrival hour's ingest record does not name
    (a notification lost, or an upload whose ingest failed). One listing of the recent days
    and one read per arrival hour."""
    now = now or datetime.now(UTC)
    listed, _ = find_new_manifests(store, ArrivalCursor(), now=now, late_days=late_days)
    by_hour: dict[str, list[ObjectInfo]] = defaultdict(list)
    for o in listed:
        if o.last_modified <= now - grace:
            by_hour[L.utc_hour_key(o.last_modified.astimezone(UTC))].append(o)
    hours = sorted(by_hour)
    with ThreadPoolExecutor(max_workers=min(16, len(hours) or 1)) as pool:
        records = list(pool.map(lambda h: read_json(store, L.hour_record_key(h)), hours))
    missing: list[ObjectInfo] = []
    for hour, record in zip(hours, records, strict=True):
        named = {d.get("manifest_key") for d in (record or {}).get("drives", [])}
        missing += [o for o in by_hour[hour] if o.key not in named]
    return sorted(missing, key=lambda o: (o.last_modified, o.key))


@dataclass(frozen=True)
class HourRun:
    hour: str
    manifests: list[str]

    @property
    def run_key(self) -> str:
        """The same manifests always give the same key, so Dagster never runs them twice."""
        return f"ingest-{self.hour}-{sha256_json(sorted(self.manifests))[:16]}"


def plan_hour_runs(manifests: list[ObjectInfo]) -> list[HourRun]:
    """One run per arrival hour (UTC), not one per drive."""
    by_hour: dict[str, list[str]] = defaultdict(list)
    for o in manifests:
        by_hour[L.utc_hour_key(o.last_modified.astimezone(UTC))].append(o.key)
    return [HourRun(hour, sorted(keys)) for hour, keys in sorted(by_hour.items())]

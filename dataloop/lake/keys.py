"""Where everything lives in the lake, and the ids that are allowed in keys.

Raw uploads are keyed by *upload* date first so that the ingest sensor lists only the recent
days; per-vehicle write policies wildcard the date (``raw/date=*/vehicle=<id>/*``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

# Vehicle and drive ids become path segments: a strict alphabet means no id can escape its
# prefix (no "/", no "..", no leading dot) on S3 or on a local disk.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")

RAW = "raw"
QUARANTINE = "quarantine"
TABLES = "tables"
INGEST = "ingest"

_RAW_KEY = re.compile(
    r"^raw/date=(?P<date>\d{4}-\d{2}-\d{2})/vehicle=(?P<vehicle>[^/]+)/"
    r"(?P<drive>[^/]+?)(?P<suffix>\.mcap|\.manifest\.json)$"
)


class InvalidId(ValueError):
    """A vehicle or drive id that could escape its prefix or is otherwise not allowed."""


def validate_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise InvalidId(
            f"invalid {what} id {value!r}: use 1-128 letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return value


@dataclass(frozen=True)
class RawKeys:
    """The pair of keys one drive upload occupies."""

    day: date
    vehicle: str
    drive: str

    def __post_init__(self) -> None:
        validate_id(self.vehicle, "vehicle")
        validate_id(self.drive, "drive")

    @property
    def prefix(self) -> str:
        return f"{raw_day_prefix(self.day)}vehicle={self.vehicle}/"

    @property
    def log(self) -> str:
        return f"{self.prefix}{self.drive}.mcap"

    @property
    def manifest(self) -> str:
        return f"{self.prefix}{self.drive}.manifest.json"


def raw_day_prefix(day: date) -> str:
    return f"{RAW}/date={day.isoformat()}/"


@dataclass(frozen=True)
class ParsedRawKey:
    day: str
    vehicle: str
    drive: str
    is_manifest: bool


def parse_raw_key(key: str) -> ParsedRawKey | None:
    """Parse a ``raw/`` key; ``None`` when it does not follow the layout at all."""
    m = _RAW_KEY.match(key)
    if not m:
        return None
    return ParsedRawKey(
        day=m["date"], vehicle=m["vehicle"], drive=m["drive"], is_manifest=m["suffix"] != ".mcap"
    )


def drive_record_key(vehicle: str, drive: str) -> str:
    """The per-drive ingest record: a small pointer, replaced atomically."""
    return f"{INGEST}/drives/vehicle={vehicle}/{drive}.json"


def hour_slug(hour: str) -> str:
    """An hourly partition key (``YYYY-MM-DD-HH:00``) as a key segment (``YYYY-MM-DD-HH00``)."""
    return hour.replace(":", "")


def hour_record_key(hour: str) -> str:
    """The per-hour ingest index."""
    return f"{INGEST}/hours/{hour_slug(hour)}.json"


def table_key(table: str, vehicle: str, drive: str, sha256: str) -> str:
    """A decoded table of one drive: immutable, named by its content hash."""
    return f"{TABLES}/{table}/vehicle={vehicle}/drive={drive}/{sha256[:32]}.parquet"


def quarantine_key(manifest_key: str) -> str:
    """The quarantine record of an upload mirrors its manifest key (which may be hostile)."""
    import hashlib

    parsed = parse_raw_key(manifest_key)
    if parsed is not None:
        try:
            validate_id(parsed.vehicle, "vehicle")
            validate_id(parsed.drive, "drive")
            return f"{QUARANTINE}/date={parsed.day}/vehicle={parsed.vehicle}/{parsed.drive}.json"
        except InvalidId:
            pass
    digest = hashlib.sha256(manifest_key.encode()).hexdigest()
    return f"{QUARANTINE}/invalid-keys/{digest}.json"


def utc_hour_key(ts: datetime) -> str:
    """Dagster's hourly partition key for a UTC timestamp."""
    return ts.strftime("%Y-%m-%d-%H:00")

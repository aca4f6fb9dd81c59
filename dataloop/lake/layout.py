"""The lake's layout: every key, prefix and zone, the hour and day keys, and the ids allowed in
keys. No other module spells a key.

The layout is a contract, not an implementation detail: vehicles write ``raw/`` and
``telemetry/`` keys, per-vehicle write policies and lifecycle rules match prefixes, deletion
requests find a subject's data by its ``vehicle=``/``drive=`` segments, and a lake written by
one version of the loop is read by the next. A key string here changes only with a migration.

Raw uploads are keyed by *upload* date first so that the ingest sensor lists only the recent
days; per-vehicle write policies wildcard the date (``raw/date=????-??-??/vehicle=<id>/*``).
Each drive has one ledger record (a small JSON pointer updated by compare-and-swap, one section
per stage) and is listed in its arrival hour's ledger index; everything else a stage writes is
immutable and named by its content hash.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

# -- ids ------------------------------------------------------------------------------------
# Vehicle and drive ids become path segments: a strict alphabet means no id can escape its
# prefix (no "/", no "..", no leading dot) on S3 or on a local disk.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


class InvalidId(ValueError):
    """A vehicle or drive id that could escape its prefix or is otherwise not allowed."""


def validate_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise InvalidId(
            f"invalid {what} id {value!r}: use 1-128 letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return value


# -- top-level prefixes and zones -----------------------------------------------------------
RAW = "raw"  # drive logs and their manifests, written by vehicles
TELEMETRY = "telemetry"  # what each vehicle reports about the model it runs
QUARANTINE = "quarantine"  # uploads ingest refused, and why
TABLES = "tables"  # decoded canonical tables, one Parquet object per table and drive
DERIVED = "derived"  # anonymised frame packs
INGEST = "ingest"  # per-hour ingest summaries (per-drive records before the ledger)
QUALITY = "quality"  # verdicts per hour, approved drives per hour
COMPLIANCE = "compliance"  # compliance records of lakes older than the ledger
LABELING = "labeling"  # per-drive label records (before the ledger)
LEDGER = "ledger"  # the per-drive ledger and its per-hour indexes
CURATION = "curation"  # mined scenario clips per arrival day
SEARCH = "search"  # embeddings per arrival day, cached faiss indexes
DATASETS = "datasets"  # dataset versions, their manifests and supersessions
MODELS = "models"  # model bundles
SIMULATION = "simulation"  # scenario suites, gate results
RELEASES = "releases"  # TUF repository, rollout state and history, production pointer
LINEAGE = "lineage"  # lineage nodes of models and releases
AUDIT = "audit"  # deletion-request audit records
DAGSTER = "dagster"  # Dagster's step logs and step outputs (infra/helm/values.yaml)


@dataclass(frozen=True)
class Zone:
    """A named group of top-level prefixes that the bucket treats alike."""

    name: str
    prefixes: tuple[str, ...]
    aged: bool = False
    """Objects expire by age: ``assets/quality/retention.yaml`` may name the zone and its days
    (Dagster's step logs expire without it too: infra/policies.py). The other zones are the
    lake's indexes, history, artefacts and releases, never swept."""
    doc: str = ""


ZONES: tuple[Zone, ...] = (
    Zone("raw", (f"{RAW}/",), aged=True, doc="uploads; versions recoverable for a while"),
    Zone("derived", (f"{TABLES}/", f"{DERIVED}/"), aged=True, doc="rebuilt from raw"),
    Zone("quarantine", (f"{QUARANTINE}/",), aged=True, doc="refused uploads"),
    Zone("telemetry", (f"{TELEMETRY}/",), aged=True, doc="fleet reports"),
    Zone(
        "pointers",
        tuple(f"{p}/" for p in (LEDGER, INGEST, QUALITY, COMPLIANCE, LABELING, CURATION, SEARCH)),
        doc="the drive ledger, hour/day indexes (and the objects they point at)",
    ),
    Zone("history", (f"{DATASETS}/", f"{LINEAGE}/", f"{AUDIT}/"), doc="never rewritten"),
    Zone("artefacts", (f"{MODELS}/", f"{SIMULATION}/"), doc="models, suites, gate results"),
    Zone("releases", (f"{RELEASES}/",), doc="what the fleet reads"),
    Zone("dagster", (f"{DAGSTER}/",), aged=True, doc="Dagster's step logs and outputs"),
)
"""Every top-level prefix of the lake, each in exactly one zone. A stage that adds a top-level
prefix adds it here, and the bucket's lifecycle and the retention rules follow."""


def zone(name: str) -> Zone:
    for z in ZONES:
        if z.name == name:
            return z
    raise KeyError(f"no lake zone {name!r}; the zones are {', '.join(z.name for z in ZONES)}")


def aged_zones() -> tuple[Zone, ...]:
    """The zones whose objects retention may expire by age."""
    return tuple(z for z in ZONES if z.aged)


def never_swept() -> tuple[str, ...]:
    """The prefixes of every zone that retention never sweeps."""
    return tuple(p for z in ZONES if not z.aged for p in z.prefixes)


# -- hours and days -------------------------------------------------------------------------
HOUR_FORMAT = "%Y-%m-%d-%H:%M"
"""Dagster's hourly partition key: an arrival hour, ``YYYY-MM-DD-HH:00`` (UTC)."""


def utc_hour_key(ts: datetime) -> str:
    """Dagster's hourly partition key for a UTC timestamp."""
    return ts.strftime("%Y-%m-%d-%H:00")


def parse_hour(hour: str) -> datetime:
    return datetime.strptime(hour, HOUR_FORMAT).replace(tzinfo=UTC)


def hour_slug(hour: str) -> str:
    """An hourly partition key (``YYYY-MM-DD-HH:00``) as a key segment (``YYYY-MM-DD-HH00``)."""
    return hour.replace(":", "")


def day_hours(day: str) -> list[str]:
    """The 24 arrival-hour partition keys of a UTC day (``YYYY-MM-DD``)."""
    return [f"{day}-{h:02d}:00" for h in range(24)]


def _day(day: date | str) -> str:
    return day if isinstance(day, str) else day.isoformat()


# -- raw uploads (written by vehicles) ------------------------------------------------------
_RAW_KEY = re.compile(
    r"^raw/date=(?P<date>\d{4}-\d{2}-\d{2})/vehicle=(?P<vehicle>[^/]+)/"
    r"(?P<drive>[^/]+?)(?P<suffix>\.mcap|\.manifest\.json)$"
)
_ONE_DATE = "date=????-??-??"  # exactly one date segment: '*' would also match '.../vehicle=x/...'
MANIFEST_SUFFIX = ".manifest.json"
"""The commit marker of an upload: no manifest, no drive."""


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
        return f"{self.prefix}{self.drive}{MANIFEST_SUFFIX}"


RAW_UPLOADS = f"{RAW}/"
TELEMETRY_REPORTS = f"{TELEMETRY}/"


def raw_day_prefix(day: date | str) -> str:
    """Every upload of one upload day (a date or ``YYYY-MM-DD``)."""
    return f"{RAW}/date={_day(day)}/"


def raw_key_day(key: str) -> str:
    """The upload day (``YYYY-MM-DD``) of any key under ``raw/``."""
    return key.split("/")[1].removeprefix("date=")


def vehicle_upload_patterns(vehicle: str) -> tuple[str, str]:
    """What one vehicle may write (IAM wildcards): its raw uploads and its telemetry, any day."""
    validate_id(vehicle, "vehicle")
    return (
        f"{RAW}/{_ONE_DATE}/vehicle={vehicle}/*",
        f"{TELEMETRY}/{_ONE_DATE}/vehicle={vehicle}/*",
    )


def is_manifest_key(key: str) -> bool:
    return key.endswith(MANIFEST_SUFFIX)


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


def telemetry_key(vehicle: str, start: datetime, end: datetime) -> str:
    """One vehicle's report over ``[start, end)`` (UTC), filed under the day it began."""
    return (
        f"{TELEMETRY}/date={start.date().isoformat()}/vehicle={vehicle}/"
        f"{start:%Y%m%dT%H%M%S}-{end:%Y%m%dT%H%M%S}.json"
    )


# -- ownership: how a deletion request finds a subject's data -------------------------------
def in_vehicle_prefix(key: str, vehicle: str) -> bool:
    """Whether ``key`` lies under a ``vehicle=<vehicle>`` segment."""
    return f"vehicle={vehicle}" in key.split("/")


def belongs_to(key: str, vehicle: str, drive: str | None = None) -> bool:
    """Whether the object at ``key`` holds data of the vehicle (or of one of its drives):
    every per-vehicle key has a ``vehicle=V`` segment; a per-drive key has a ``drive=D``
    segment or is named ``D.*``."""
    parts = key.split("/")
    if f"vehicle={vehicle}" not in parts:
        return False
    if drive is None:
        return True
    return f"drive={drive}" in parts or parts[-1].startswith(f"{drive}.")


def key_digest(key: str) -> str:
    """The content hash (32 hex digits) a content-addressed key is named by."""
    return key.rsplit("/", 1)[-1][:32]


def rehashed_key(key: str, sha256: str) -> str:
    """The key of a content-addressed Parquet object rewritten next to ``key``."""
    return f"{key.rsplit('/', 1)[0]}/{sha256[:32]}.parquet"


# -- the ledger: one record per drive, one index per arrival hour ---------------------------
LEDGER_DRIVES = f"{LEDGER}/drives/"
LEDGER_HOURS = f"{LEDGER}/hours/"


def ledger_key(vehicle: str, drive: str) -> str:
    """A drive's ledger record (one section per stage): a small pointer, updated by CAS."""
    return f"{LEDGER_DRIVES}vehicle={vehicle}/{drive}.json"


def ledger_hour_key(hour: str) -> str:
    """The ledger's index of one arrival hour: the hour's drives with their sections."""
    return f"{LEDGER_HOURS}{hour_slug(hour)}.json"


def parse_ledger_hour_key(key: str) -> str | None:
    """The hourly partition key of a ledger hour-index key, or ``None``."""
    name = key.removeprefix(LEDGER_HOURS)
    if name == key or "/" in name or not name.endswith(".json") or len(name) != 20:
        return None
    slug = name.removesuffix(".json")
    return f"{slug[:-2]}:{slug[-2:]}"


def parse_drive_record_key(key: str) -> tuple[str, str] | None:
    """``(vehicle, drive)`` of a per-drive record key (the ledger's, or a pre-ledger one)."""
    parts = key.split("/")
    if len(parts) != 4 or parts[1] != "drives" or not parts[3].endswith(".json"):
        return None
    return parts[2].removeprefix("vehicle="), parts[3].removesuffix(".json")


# -- ingest ---------------------------------------------------------------------------------
HOUR_RECORDS = f"{INGEST}/hours/"
UPLOAD_QUEUE_PENDING = f"{DAGSTER}/sensors/raw_upload_sensor/pending/"
"""The upload sensor's receipt handles, kept from the tick that received the messages to the
next one, which acknowledges them (ingest/queue_tick.py). Sensor state, in the aged
``dagster`` zone: the object of a tick whose cursor Dagster never stored is left behind (its
messages come again and are deduped), and expires."""
QUARANTINE_RECORDS = f"{QUARANTINE}/"


def hour_record_key(hour: str) -> str:
    """The per-hour ingest summary (every upload of the hour, quarantined ones included)."""
    return f"{INGEST}/hours/{hour_slug(hour)}.json"


def table_key(table: str, vehicle: str, drive: str, sha256: str) -> str:
    """A decoded table of one drive: immutable, named by its content hash."""
    return f"{TABLES}/{table}/vehicle={vehicle}/drive={drive}/{sha256[:32]}.parquet"


def drive_tables_prefix(table: str, vehicle: str, drive: str) -> str:
    """Every version of one decoded table of one drive."""
    return f"{TABLES}/{table}/vehicle={vehicle}/drive={drive}/"


def step_io_prefix(lake_prefix: str = "") -> str:
    """Where Dagster's steps leave their outputs for steps on other machines, in the bucket of
    a lake under ``lake_prefix`` (zone ``dagster``, aged)."""
    return "/".join(p for p in (lake_prefix, DAGSTER, "io") if p)


def quarantine_key(manifest_key: str) -> str:
    """The quarantine record of an upload mirrors its manifest key (which may be hostile)."""
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


# -- quality and compliance -----------------------------------------------------------------
def hour_verdicts_key(hour: str) -> str:
    return f"{QUALITY}/hours/{hour_slug(hour)}.json"


def approved_key(hour: str) -> str:
    """The drives of an arrival hour that passed quality and may be made compliant."""
    return f"{QUALITY}/approved/{hour_slug(hour)}.json"


def frame_pack_key(vehicle: str, drive: str, sha256: str) -> str:
    """A drive's anonymised JPEGs, concatenated; immutable, named by its content hash."""
    return f"{DERIVED}/frames/vehicle={vehicle}/drive={drive}/{sha256[:32]}.jpgs"


# -- before the ledger: per-stage drive records (read only by ``ledger.migrate``) -----------
LEGACY_DRIVE_RECORDS = f"{INGEST}/drives/"


def drive_record_key(vehicle: str, drive: str) -> str:
    """A drive's ingest record as a lake before the ledger holds it."""
    return f"{INGEST}/drives/vehicle={vehicle}/{drive}.json"


def verdict_key(vehicle: str, drive: str) -> str:
    """A drive's quality verdict as a lake before the ledger holds it."""
    return f"{QUALITY}/drives/vehicle={vehicle}/{drive}.json"


def compliance_key(vehicle: str, drive: str) -> str:
    """A drive's compliance record as a lake before the ledger holds it."""
    return f"{COMPLIANCE}/drives/vehicle={vehicle}/{drive}.json"


def labels_record_key(vehicle: str, drive: str) -> str:
    """A drive's label record as a lake before the ledger holds it."""
    return f"{LABELING}/drives/vehicle={vehicle}/{drive}.json"


# -- curation: scenario clips per arrival day -----------------------------------------------
SCENARIO_INDEX = f"{CURATION}/scenarios"
SCENARIO_DAYS = f"{SCENARIO_INDEX}/date="
"""Lists every day's scenario index and clip tables."""


def day_index_key(day: str) -> str:
    """The scenario index of one arrival day: a pointer to its clip table."""
    return f"{SCENARIO_INDEX}/date={day}.json"


def day_clips_key(day: str, sha256: str) -> str:
    return f"{SCENARIO_INDEX}/date={day}/{sha256[:32]}.parquet"


def scenario_index_days(keys: list[str]) -> list[str]:
    """The days (``YYYY-MM-DD``) of the scenario day-index keys among ``keys``, sorted."""
    return sorted(
        k.removeprefix(SCENARIO_DAYS).removesuffix(".json")
        for k in keys
        if k.startswith(SCENARIO_DAYS) and k.endswith(".json")
    )


# -- search: embeddings per arrival day, faiss caches ---------------------------------------
EMBEDDINGS = f"{SEARCH}/embeddings"
EMBEDDING_DAYS = f"{EMBEDDINGS}/date="
"""Lists every day's embeddings pointer and Parquet objects."""
FAISS = f"{SEARCH}/faiss/"


def embeddings_day_key(day: str) -> str:
    """The embeddings of one arrival day: a pointer to its Parquet object."""
    return f"{EMBEDDINGS}/date={day}.json"


def embeddings_key(day: str, sha256: str) -> str:
    return f"{EMBEDDINGS}/date={day}/{sha256[:32]}.parquet"


def is_embeddings_day_key(key: str) -> bool:
    return (
        key.startswith(f"{EMBEDDINGS}/date=")
        and key.endswith(".json")
        and "/" not in key[len(EMBEDDINGS) + 1 :]
    )


def faiss_key(digest: str) -> str:
    """A trained faiss index, named by the hash of its inputs."""
    return f"{FAISS}{digest}.faiss"


# -- datasets -------------------------------------------------------------------------------
ALL_DATASETS = f"{DATASETS}/"


def dataset_prefix(name: str) -> str:
    return f"{DATASETS}/{name}"


def dataset_latest_key(name: str) -> str:
    return f"{dataset_prefix(name)}/latest.json"


def dataset_version_key(name: str, seq: int) -> str:
    return f"{dataset_prefix(name)}/versions/{seq:06d}.json"


def dataset_versions_prefix(name: str) -> str:
    return f"{dataset_prefix(name)}/versions/"


def dataset_manifest_key(name: str, version: str) -> str:
    return f"{dataset_prefix(name)}/manifests/{version}.parquet"


def dataset_superseded_key(name: str, version: str) -> str:
    return f"{dataset_prefix(name)}/superseded/{version}.json"


def dataset_names(keys: list[str]) -> list[str]:
    """The names of the datasets whose latest pointers are among ``keys``, sorted."""
    return sorted(
        {
            k.split("/")[1]
            for k in keys
            if k.startswith(f"{DATASETS}/") and k.endswith("latest.json")
        }
    )


# -- models ---------------------------------------------------------------------------------
BUNDLES = f"{MODELS}/driving"
MODEL_LATEST_KEY = f"{BUNDLES}/latest.json"
"""The newest bundle (the training trigger compares against it)."""


def bundle_prefix(version: str) -> str:
    return f"{BUNDLES}/{version}/"


def bundle_key(version: str, name: str) -> str:
    return f"{BUNDLES}/{version}/{name}"


# -- simulation -----------------------------------------------------------------------------
GATE_RESULT_KEY = f"{SIMULATION}/gate/latest.json"
"""The latest verdict (without per-scenario rows, which are at its ``results_key``)."""


def suite_key(version: str) -> str:
    return f"{SIMULATION}/suites/{version}.json"


def results_key(candidate: str, production: str, suite: str, gate: str) -> str:
    return f"{SIMULATION}/results/{suite[:16]}/{candidate}-vs-{production}-{gate}.json"


# -- releases -------------------------------------------------------------------------------
PRODUCTION_KEY = f"{RELEASES}/production.json"
"""The model in production: ``{"model_version": ...}``, written by the OTA release."""
ALL_RELEASES = f"{RELEASES}/"
"""Everything a vehicle may read."""
ROLLOUT_KEY = f"{RELEASES}/rollout.json"
RELEASE_HISTORY_KEY = f"{RELEASES}/history.json"
TUF = f"{RELEASES}/tuf"
TUF_METADATA = f"{TUF}/metadata"
TUF_TARGETS = f"{TUF}/targets"


def tuf_metadata_key(filename: str) -> str:
    """A TUF metadata file (``1.root.json``, ``timestamp.json``, ...; TUF names them)."""
    return f"{TUF_METADATA}/{filename}"


def tuf_target_key(path: str, sha256: str) -> str:
    """Where a target is stored: TUF's consistent-snapshot name, ``<dir>/<sha256>.<name>``."""
    head, _, name = path.rpartition("/")
    return f"{TUF_TARGETS}/{head}/{sha256}.{name}" if head else f"{TUF_TARGETS}/{sha256}.{name}"


def release_target(release: int | str, name: str) -> str:
    """The TUF target path of one file of a release (what the vehicle asks its updater for)."""
    return f"driving/release-{release}/{name}"


COHORTS = 100
"""The fleet is cut into 100 cohorts, one per percent of a staged rollout."""


def cohort(vehicle: str) -> int:
    """A vehicle's rollout cohort (sha256 of its id, mod 100): fixed for the vehicle's life, so
    the car knows it without asking the cloud, and a stage of p % is cohorts below p."""
    return int(hashlib.sha256(vehicle.encode()).hexdigest(), 16) % COHORTS


def cohort_role(number: int) -> str:
    """The delegated TUF targets role that signs one cohort's assignment (``cohort-07``)."""
    return f"cohort-{number:02d}"


def assignment_target(number: int) -> str:
    """The TUF target path of one cohort's assignment (the only path its role may sign)."""
    return f"assignments/{cohort_role(number)}.json"


# -- lineage and audit ----------------------------------------------------------------------
def node_key(kind: str, version: str) -> str:
    return f"{LINEAGE}/{kind}/{version}.json"


def nodes_prefix(kind: str) -> str:
    return f"{LINEAGE}/{kind}/"


def forget_audit_key(at: str, digest: str) -> str:
    """The audit record of one deletion request, made at ``at`` (ISO time)."""
    return f"{AUDIT}/forget/{at.replace(':', '')}-{digest}.json"


# -- indexes that list drives by id (rewritten, not deleted, by a deletion request) ---------
HOUR_INDEXES = (
    LEDGER_HOURS,
    HOUR_RECORDS,
    f"{QUALITY}/hours/",
    f"{QUALITY}/approved/",
    f"{COMPLIANCE}/hours/",  # written by releases before the ledger's compliance section
)
"""Hour indexes (JSON) that list drives by id."""
DAY_INDEXES = (f"{SCENARIO_INDEX}/", f"{EMBEDDINGS}/")
"""Day indexes: a pointer ``…/date=D.json`` to Parquet objects with vehicle_id/drive_id."""

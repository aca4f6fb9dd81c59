"""What each rule file may say: one pydantic model per file of the rules folder.

The models only check (``extra="forbid"``: a misspelled key is an error; ``strict``: a
string is no number); loaders keep returning the document as parsed, so a default here is
what the code already assumes when a key is absent. Enumerations that the code defines
elsewhere (ego features, roads) are spelled out here so that this module imports nothing of
the loop; tests/test_rules.py checks that they agree.
"""

from __future__ import annotations

import zoneinfo
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# -- quality/<table>.yaml, quality/policy.yaml ------------------------------------------------
ENGINES = ("gx", "duckdb")
SEVERITIES = ("quarantine", "warn")
ROW_WISE_GX = (
    "expect_column_values_to_be_between",
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_in_set",
    "expect_compound_columns_to_be_unique",
)
"""Checks GX can run over the hour's concatenated rows; order-dependent ones (increasing
timestamps) must see one drive at a time, which DuckDB does with a window per drive."""
CheckType = Literal[
    "expect_column_values_to_be_between",
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_in_set",
    "expect_column_values_to_be_increasing",
    "expect_compound_columns_to_be_unique",
    "rate_within",
    "max_gap_below",
]


KWARGS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "expect_column_values_to_be_between": (("column",), ("min_value", "max_value")),
    "expect_column_values_to_not_be_null": (("column",), ()),
    "expect_column_values_to_be_in_set": (("column", "value_set"), ()),
    "expect_column_values_to_be_increasing": (("column",), ("strictly",)),
    "expect_compound_columns_to_be_unique": (("column_list",), ()),
    "rate_within": (("hz", "tolerance"), ()),
    "max_gap_below": (("seconds",), ()),
}
"""Per check type, the kwargs it needs and the ones it may take: what both engines run alike
(quality/sql_checks.py translates exactly these)."""


class Expectation(Rule):
    id: str
    family: str
    engine: Literal["gx", "duckdb"]
    severity: Literal["quarantine", "warn"]
    type: CheckType | None = None
    kwargs: dict[str, Any] = {}
    sql: str | None = None
    description: str = ""
    mostly: float = Field(default=1.0, ge=0.0, le=1.0)

    @field_validator("kwargs")
    @classmethod
    def _kwargs(cls, kwargs: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        kind = info.data.get("type")
        if kind is None:
            return kwargs
        needed, optional = KWARGS[kind]
        allowed = ", ".join(needed + optional)
        for key in kwargs:
            if key not in needed + optional:
                raise ValueError(f"{kind}: unknown kwarg {key!r}; allowed: {allowed}")
        for key in needed:
            if key not in kwargs:
                raise ValueError(f"{kind}: kwargs need {key!r} (allowed: {allowed})")
        return kwargs

    @model_validator(mode="after")
    def _runnable(self) -> Expectation:
        if not (self.type or self.sql):
            raise ValueError(f"expectation {self.id!r} needs a type or sql")
        if self.engine == "gx" and self.type not in ROW_WISE_GX:
            raise ValueError(
                f"expectation {self.id!r}: {self.type} runs in duckdb, not gx "
                f"(gx runs: {', '.join(ROW_WISE_GX)})"
            )
        return self


class Suite(Rule):
    table: str
    expectations: list[Expectation] = []


class QualityPolicy(Rule):
    max_quarantine_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    min_usable_drives: int = Field(default=1, ge=0)


class FleetProfile(Rule):
    """The fleet profile (fleet.yaml): the tables every drive carries, its front camera."""

    required_tables: list[str] = []
    front_camera: str = Field(default="front", min_length=1)

    @field_validator("required_tables")
    @classmethod
    def _known_tables(cls, names: list[str], info: ValidationInfo) -> list[str]:
        tables = (info.context or {}).get("tables", ())
        if unknown := [n for n in names if tables and n not in tables]:
            raise ValueError(f"unknown table {unknown[0]!r}; allowed: {', '.join(tables)}")
        return names


# -- quality/geofence.yaml, quality/retention.yaml --------------------------------------------
class Zone(Rule):
    name: str
    action: Literal["coarsen", "exclude"]
    polygon: list[list[float]] = Field(min_length=3)
    precision_m: float = Field(default=1000.0, gt=0)

    @field_validator("polygon")
    @classmethod
    def _pairs(cls, polygon: list[list[float]]) -> list[list[float]]:
        for i, vertex in enumerate(polygon):
            if len(vertex) != 2:
                raise ValueError(f"vertex {i} is {vertex}: each is [latitude, longitude]")
        return polygon


class Geofence(Rule):
    zones: list[Zone] = []


class RetentionZone(Rule):
    prefixes: list[str] = Field(min_length=1)
    days: int = Field(ge=1)  # S3 lifecycle rules count whole days, at least one

    @field_validator("prefixes")
    @classmethod
    def _sweepable(cls, prefixes: list[str], info: ValidationInfo) -> list[str]:
        never = tuple((info.context or {}).get("never_swept", ()))
        for prefix in prefixes:
            if prefix.startswith(never) or not prefix.endswith("/"):
                raise ValueError(
                    f"prefix {prefix!r} may not be swept (a prefix ends with '/'; "
                    f"never swept: {', '.join(never)})"
                )
        return prefixes


class Retention(Rule):
    zones: dict[str, RetentionZone]


# -- curation/training.yaml -------------------------------------------------------------------
class Split(Rule):
    by: Literal["drive", "vehicle"] = "drive"
    salt: str
    fractions: dict[Literal["train", "val", "test"], float]

    @field_validator("fractions")
    @classmethod
    def _positive(cls, fractions: dict[str, float]) -> dict[str, float]:
        if any(v < 0 for v in fractions.values()) or sum(fractions.values()) <= 0:
            raise ValueError("fractions are >= 0 and add up to more than 0")
        return fractions


class Curation(Rule):
    name: str
    mix: dict[str, float] = Field(min_length=1)
    max_clips_per_category: int = Field(default=10**9, ge=0)
    min_severity: float = 0.0
    near_duplicate_gap_s: float = 5.0
    split: Split


# -- training/model.yaml, training/trigger.yaml -----------------------------------------------
EGO_FEATURES = ("speed", "acceleration", "yaw_rate", "lateral_offset", "heading_error")
OUTPUTS = ("acceleration", "steering")
HISTORY = 10
MAX_OBJECTS = 8


class Inputs(Rule):
    history: int = Field(ge=1, le=HISTORY)
    ego: list[Literal["speed", "acceleration", "yaw_rate", "lateral_offset", "heading_error"]]
    objects: int = Field(ge=0, le=MAX_OBJECTS)


class Model(Rule):
    name: str
    architecture: Literal["mlp"] = "mlp"
    inputs: dict[Literal["acceleration", "steering"], Inputs | None] | None = None
    hidden: list[int] = Field(min_length=1)
    ensemble: int = Field(default=1, ge=1)
    epochs: int = Field(ge=1)
    early_stopping: bool = False
    batch_size: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    seed: int
    threads: int = Field(ge=1)
    expert_model_version: str
    takeover_seconds: float = Field(ge=0)


class Schedule(Rule):
    cron: str
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, cron: str) -> str:
        if len(cron.split()) != 5:
            raise ValueError(f"cron {cron!r}: five fields (minute hour day month weekday)")
        return cron

    @field_validator("timezone")
    @classmethod
    def _zone(cls, timezone: str) -> str:
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {timezone!r} (an IANA name: UTC, Europe/Berlin)"
            ) from None
        return timezone


class Trigger(Rule):
    min_new_clips: int = Field(ge=0)
    category_growth_pct: float = Field(ge=0)
    min_category_clips: int = Field(ge=0)
    hold_during_rollout: bool = True
    min_dataset_clips: int = Field(ge=0)
    schedule: Schedule


# -- gates/release.yaml -----------------------------------------------------------------------
ROADS = ("highway", "merge", "roundabout", "intersection")
Road = Literal["highway", "merge", "roundabout", "intersection"]


class Absolute(Rule):
    min_mean_score: float
    max_at_fault_collision_rate: float = Field(ge=0)
    max_offroad_rate: float = Field(ge=0)


class Regression(Rule):
    alpha: float = Field(gt=0, lt=1)
    min_effect: float = Field(ge=0)


class Stock(Rule):
    roads: list[Road] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)
    seconds: float = Field(gt=0)


class Agreement(Rule):
    collision_agreement: float | None = Field(default=None, ge=0.0, le=1.0)
    progress_within_5pct: float | None = Field(default=None, ge=0.0, le=1.0)
    score_rank_correlation: float | None = Field(default=None, ge=-1.0, le=1.0)


class Batched(Rule):
    roads: list[Road] = ["highway", "merge"]
    first_seed: int = 1001
    seeds: int = Field(default=0, ge=0)
    seconds: float | None = Field(default=None, gt=0)
    agreement: Agreement | None = None

    @model_validator(mode="after")
    def _seconds(self) -> Batched:
        if self.seeds and self.seconds is None:
            raise ValueError("suite.batched: seeds need seconds")
        return self


class FromLogs(Rule):
    max_clips: int = Field(default=0, ge=0)
    variations: int = Field(default=0, ge=0)
    seconds: float = Field(default=15.0, gt=0)
    seed: int = 0


class GateSuite(Rule):
    stock: Stock
    batched: Batched | None = None
    from_logs: FromLogs | None = None


class Gate(Rule):
    absolute: Absolute
    regression: Regression
    suite: GateSuite


# -- release/rollout.yaml ---------------------------------------------------------------------
class Rollout(Rule):
    stages: list[int] = Field(min_length=1)
    min_km_per_stage: float = Field(ge=0)
    max_disengagement_increase: float = Field(ge=0)
    min_disengagement_slack_per_1000km: float = Field(default=0.0, ge=0)
    max_errors_per_1000km: float = Field(ge=0)

    @field_validator("stages")
    @classmethod
    def _percentages(cls, stages: list[int]) -> list[int]:
        if any(not 0 < s <= 100 for s in stages) or stages != sorted(set(stages)):
            raise ValueError(f"stages {stages}: increasing percentages in 1..100")
        return stages


# -- labeling/offboard.yaml -------------------------------------------------------------------
class Association(Rule):
    max_gap_s: float = Field(ge=0)
    gate_m: float = Field(gt=0)


class Smoother(Rule):
    accel_noise: float = Field(gt=0)
    position_sigma: float = Field(gt=0)
    position_sigma_per_m: float = Field(ge=0)
    velocity_sigma: float = Field(gt=0)


class Ghosts(Rule):
    min_frames: int = Field(ge=1)


class Confidence(Rule):
    review_below: float = Field(ge=0.0, le=1.0)


class Offboard(Rule):
    association: Association
    smoother: Smoother
    ghosts: Ghosts
    confidence: Confidence | None = None


# -- ingest/adapters/*.yaml, ingest/fleet.yaml --------------------------------------------------
ENCODINGS = ("protobuf", "json", "cdr", "ros1")
"""MCAP message encodings an adapter may decode (each with its schema encoding: protobuf,
jsonschema, ros2msg, ros1msg)."""
UNITS: dict[str, float] = {
    "m": 1.0,
    "cm": 0.01,
    "mm": 0.001,
    "km": 1000.0,
    "m/s": 1.0,
    "km/h": 1 / 3.6,
    "mph": 0.44704,
    "rad": 1.0,
    "deg": 0.017453292519943295,
    "rad/s": 1.0,
    "deg/s": 0.017453292519943295,
    "m/s^2": 1.0,
    "g": 9.80665,
    "fraction": 1.0,
    "percent": 0.01,
}
"""A source unit and its factor to the SI unit every canonical column is in (m, m/s, rad,
rad/s, m/s^2, fractions 0..1)."""
Unit = Literal[
    "m", "cm", "mm", "km", "m/s", "km/h", "mph", "rad", "deg", "rad/s", "deg/s", "m/s^2", "g",
    "fraction", "percent",
]  # fmt: skip
Reduce = Literal["sigma_h", "yaw", "count"]
"""Derivations of a field that is not a scalar: ``sigma_h`` the horizontal standard deviation
of a row-major 3x3 covariance (sqrt of the larger of its first two diagonal terms), ``yaw``
the heading (rad) of a quaternion with x, y, z, w, ``count`` an array's length."""


class Column(Rule):
    path: str | None = None
    const: str | float | int | bool | None = None
    unit: Unit | None = None
    scale: float | None = None
    offset: float | None = None
    enum: Literal["names"] | dict[int, str] | None = None
    reduce: Reduce | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Column:
        if (self.path is None) == (self.const is None):
            raise ValueError("a column has either a field path ('path') or a constant ('const')")
        return self


class FromField(Rule):
    path: str


class Adapter(Rule):
    schema_name: str = Field(alias="schema")
    encodings: list[Literal["protobuf", "json", "cdr", "ros1"]] = Field(min_length=1)
    table: str
    topic: str | None = None
    time: Literal["log_time", "publish_time"] | FromField = "log_time"
    rows: str | None = None
    sensor: str | FromField | None = None
    columns: dict[str, Column] = Field(min_length=1)

    @field_validator("columns", mode="before")
    @classmethod
    def _bare_paths(cls, columns: Any) -> Any:
        """``speed_mps: speed`` is short for ``speed_mps: {path: speed}``."""
        if isinstance(columns, dict):
            return {k: {"path": v} if isinstance(v, str) else v for k, v in columns.items()}
        return columns

    @model_validator(mode="after")
    def _columns_of_the_table(self, info: ValidationInfo) -> Adapter:
        tables: dict[str, tuple[str, ...]] = (info.context or {}).get("tables", {})
        if tables and self.table not in tables:
            raise ValueError(f"table {self.table!r} is not allowed; allowed: {', '.join(tables)}")
        allowed = tables.get(self.table, ())
        if unknown := [c for c in self.columns if allowed and c not in allowed]:
            raise ValueError(
                f"table {self.table}: unknown column {unknown[0]!r}; allowed: {', '.join(allowed)}"
            )
        needs = (info.context or {}).get("needs", {}).get(self.table, ())
        if missing := [c for c in needs if c not in self.columns]:
            raise ValueError(f"table {self.table}: an adapter gives {', '.join(needs)}; "
                             f"missing: {', '.join(missing)}")  # fmt: skip
        together = (info.context or {}).get("together", {}).get(self.table, ())
        if (given := [c for c in together if c in self.columns]) and len(given) < len(together):
            missing = ", ".join(c for c in together if c not in self.columns)
            raise ValueError(f"table {self.table}: an adapter gives all of {', '.join(together)} "
                             f"or none; missing: {missing}")  # fmt: skip
        if needs and self.rows:
            raise ValueError(f"table {self.table}: one row per message, no 'rows'")
        sensed = (info.context or {}).get("sensed", ())
        if self.sensor is not None and sensed and self.table not in sensed:
            raise ValueError(f"only {', '.join(sensed)} name a sensor, not {self.table}")
        return self


class Adapters(Rule):
    adapters: list[Adapter] = Field(min_length=1)

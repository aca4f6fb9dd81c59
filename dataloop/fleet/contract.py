"""The drive-log contract: one MCAP file per drive segment, these channels, these units.

Frames: ego vehicle frame is x forward, y left, z up (ISO 8855 / ROS REP-103), origin at the
rear axle. Times are UTC nanoseconds since the epoch; a message's ``log_time`` and
``publish_time`` are both the measurement time. See docs/drive-log-contract.md.
"""

from __future__ import annotations

from dataclasses import dataclass

CONTRACT_VERSION = 1
PROFILE = "dataloop"
DRIVE_METADATA = "dataloop.drive"
"""Name of the MCAP metadata record that carries the drive's identity."""
GROUND_TRUTH_OBJECTS = "ground_truth/objects.parquet"
"""Optional MCAP attachment (simulated drives only): every object's true state at every
perception frame, in the ego frame. Only scoring reads it."""


@dataclass(frozen=True)
class ChannelSpec:
    topic: str
    schema: str
    table: str
    rate_hz: float | None
    required: bool
    description: str


CAMERA = ChannelSpec(
    "/camera/front/image",
    "foxglove.CompressedImage",
    "frames",
    10.0,
    True,
    "front camera, JPEG",
)
GNSS = ChannelSpec(
    "/gnss/fix",
    "foxglove.LocationFix",
    "gnss",
    10.0,
    True,
    "WGS84 latitude/longitude in degrees, altitude in m",
)
IMU = ChannelSpec(
    "/imu",
    "dataloop.Imu",
    "imu",
    100.0,
    True,
    "linear acceleration in m/s^2 and angular rate in rad/s, ego frame",
)
VEHICLE_STATE = ChannelSpec(
    "/vehicle/state",
    "dataloop.VehicleState",
    "vehicle_state",
    50.0,
    True,
    "CAN: speed m/s, road-wheel steering angle rad (left positive), accelerator and brake "
    "pedal 0..1, yaw rate rad/s, gear, turn signal",
)
OBJECTS = ChannelSpec(
    "/perception/objects",
    "dataloop.PerceptionObjects",
    "objects",
    10.0,
    True,
    "onboard perception: id, class, position m and velocity over ground m/s in the ego frame, "
    "size m, heading rad relative to ego x, confidence 0..1",
)
EVENTS = ChannelSpec(
    "/events",
    "dataloop.DriveEvent",
    "events",
    None,
    False,
    "disengagement, hard brake, AEB, manual trigger",
)

LANE = ChannelSpec(
    "/perception/lane",
    "dataloop.LaneEstimate",
    "lanes",
    10.0,
    False,
    "onboard lane perception: lateral offset m of the rear axle from the lane centre (left "
    "positive), heading error rad (lane heading minus ego heading), lane width m, confidence "
    "0..1; optional (logs before it still ingest), needed to train driving models",
)

CHANNELS: tuple[ChannelSpec, ...] = (CAMERA, GNSS, IMU, VEHICLE_STATE, OBJECTS, EVENTS, LANE)
BY_TOPIC = {c.topic: c for c in CHANNELS}
KNOWN_SCHEMAS = frozenset(c.schema for c in CHANNELS)

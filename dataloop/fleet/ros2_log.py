"""Writes drive logs as a ROS 2 vehicle records them: mcap-ros2-support's writer (the ``ros2``
profile, ``cdr`` messages, ``ros2msg`` schemas), standard message types on Autoware-style
topics, and the fleet's own messages (``dataloop_msgs``) for what ROS has no standard type
for. Same interface as :class:`dataloop.fleet.logwriter.DriveLogWriter`; ingest maps it with
the built-in ROS 2 adapters plus ``assets/ingest/adapters/dataloop_ros2.yaml``."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mcap.writer import CompressionType
from mcap_ros2.writer import Writer

from dataloop.fleet import contract
from dataloop.fleet.ros2_msgs import definition
from dataloop.lake.layout import validate_id

TOPICS: dict[str, tuple[str, str]] = {
    contract.CAMERA.topic: (
        "/sensing/camera/front/image_raw/compressed",
        "sensor_msgs/msg/CompressedImage",
    ),
    contract.GNSS.topic: ("/sensing/gnss/fix", "sensor_msgs/msg/NavSatFix"),
    contract.IMU.topic: ("/sensing/imu/imu_data", "sensor_msgs/msg/Imu"),
    contract.VEHICLE_STATE.topic: ("/vehicle/status/report", "dataloop_msgs/msg/VehicleReport"),
    contract.OBJECTS.topic: (
        "/perception/object_recognition/objects",
        "dataloop_msgs/msg/PerceivedObjects",
    ),
    contract.EVENTS.topic: ("/system/events", "dataloop_msgs/msg/DriveEvent"),
    contract.LANE.topic: ("/perception/lane/estimate", "dataloop_msgs/msg/LaneEstimate"),
}
"""Contract channel -> (ROS 2 topic, message type)."""
STEERING_RATIO = 15.0
"""Steering-wheel degrees per road-wheel degree (the vehicle report carries the wheel)."""
GEARS = {"unknown": 0, "park": 1, "reverse": 2, "neutral": 3, "drive": 4}
TURN_SIGNALS = {"off": 0, "left": 1, "right": 2, "hazard": 3}


def _header(t_ns: int, frame_id: str) -> dict[str, Any]:
    sec, nanosec = divmod(t_ns, 1_000_000_000)
    return {"stamp": {"sec": sec, "nanosec": nanosec}, "frame_id": frame_id}


class Ros2DriveLogWriter:
    """One drive segment as ROS 2 MCAP. Use as a context manager; times are UTC ns."""

    def __init__(
        self,
        path: str | Path,
        *,
        vehicle: str,
        drive: str,
        software_version: str = "dataloop-sim",
        model_version: str = "baseline",
        extra_metadata: dict[str, str] | None = None,
        chunk_size: int = 1024 * 1024,
        compression: CompressionType = CompressionType.ZSTD,
        channels: Sequence[contract.ChannelSpec] = contract.CHANNELS,
    ):
        validate_id(vehicle, "vehicle")
        validate_id(drive, "drive")
        self.path = Path(path)
        self._file = self.path.open("wb")
        self._writer = Writer(self._file, chunk_size=chunk_size, compression=compression)
        self._schemas = {
            spec.topic: self._writer.register_msgdef(
                TOPICS[spec.topic][1], definition(TOPICS[spec.topic][1])
            )
            for spec in channels
        }
        self._seq: dict[str, int] = dict.fromkeys(self._schemas, 0)
        self._writer.add_metadata(
            contract.DRIVE_METADATA,
            {
                "vehicle": vehicle,
                "drive": drive,
                "software_version": software_version,
                "model_version": model_version,
                "contract_version": str(contract.CONTRACT_VERSION),
                **(extra_metadata or {}),
            },
        )
        self._closed = False

    @property
    def topics(self) -> list[str]:
        """The contract channels recorded (each under its ROS 2 topic, see ``TOPICS``)."""
        return list(self._schemas)

    def _write(self, channel: str, t_ns: int, message: dict[str, Any]) -> None:
        seq = self._seq[channel]
        self._seq[channel] = seq + 1
        topic, _ = TOPICS[channel]
        self._writer.write_message(topic, self._schemas[channel], message, t_ns, t_ns, seq)

    def camera(self, t_ns: int, jpeg: bytes, frame_id: str = "camera_front") -> None:
        msg = {"header": _header(t_ns, frame_id), "format": "jpeg", "data": jpeg}
        self._write(contract.CAMERA.topic, t_ns, msg)

    def gnss(self, t_ns: int, lat: float, lon: float, alt: float = 0.0, sigma_m: float = 0.5):
        msg = {
            "header": _header(t_ns, "gnss"),
            "status": {"status": 0, "service": 1},
            "latitude": lat,
            "longitude": lon,
            "altitude": alt,
            "position_covariance": [sigma_m**2, 0, 0, 0, sigma_m**2, 0, 0, 0, (2 * sigma_m) ** 2],
            "position_covariance_type": 2,  # diagonal known
        }
        self._write(contract.GNSS.topic, t_ns, msg)

    def imu(self, t_ns: int, accel: Sequence[float], gyro: Sequence[float]) -> None:
        ax, ay, az = accel
        gx, gy, gz = gyro
        msg = {
            "header": _header(t_ns, "imu"),
            "orientation_covariance": [-1.0] + [0.0] * 8,  # REP 145: no orientation
            "angular_velocity": {"x": gx, "y": gy, "z": gz},
            "linear_acceleration": {"x": ax, "y": ay, "z": az},
        }
        self._write(contract.IMU.topic, t_ns, msg)

    def vehicle_state(
        self,
        t_ns: int,
        *,
        speed_mps: float,
        steering_angle_rad: float,
        accelerator: float,
        brake: float,
        yaw_rate_radps: float,
        gear: str = "drive",
        turn_signal: str = "off",
    ) -> None:
        msg = {
            "header": _header(t_ns, "base_link"),
            "speed_kph": speed_mps * 3.6,
            "steering_wheel_deg": math.degrees(steering_angle_rad) * STEERING_RATIO,
            "throttle_pct": accelerator * 100.0,
            "brake_pct": brake * 100.0,
            "yaw_rate_dps": math.degrees(yaw_rate_radps),
            "gear": GEARS[gear],
            "turn_signal": TURN_SIGNALS[turn_signal],
        }
        self._write(contract.VEHICLE_STATE.topic, t_ns, msg)

    def objects(self, t_ns: int, objects: Iterable[dict[str, Any]]) -> None:
        """Objects as dicts with the PerceivedObject fields; ``object_class`` by name."""
        rows = [{**o, "label": o["object_class"]} for o in objects]
        for row in rows:
            del row["object_class"]
        self._write(
            contract.OBJECTS.topic, t_ns, {"header": _header(t_ns, "base_link"), "objects": rows}
        )

    def event(self, t_ns: int, event_type: str, detail: str = "") -> None:
        msg = {"header": _header(t_ns, "base_link"), "type": event_type, "detail": detail}
        self._write(contract.EVENTS.topic, t_ns, msg)

    def lane(
        self,
        t_ns: int,
        *,
        lateral_offset_m: float,
        heading_error_rad: float,
        lane_width_m: float,
        confidence: float,
    ) -> None:
        msg = {
            "header": _header(t_ns, "base_link"),
            "lateral_offset_m": lateral_offset_m,
            "heading_error_rad": heading_error_rad,
            "lane_width_m": lane_width_m,
            "confidence": confidence,
        }
        self._write(contract.LANE.topic, t_ns, msg)

    def add_metadata(self, name: str, data: dict[str, str]) -> None:
        self._writer.add_metadata(name, data)

    def add_attachment(self, name: str, media_type: str, data: bytes, t_ns: int = 0) -> None:
        self._writer.add_attachment(t_ns, t_ns, name, media_type, data)

    def close(self) -> None:
        if not self._closed:
            self._writer.finish()
            self._file.close()
            self._closed = True

    def __enter__(self) -> Ros2DriveLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

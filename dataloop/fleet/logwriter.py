"""Writes drive logs in the contract: valid MCAP with embedded schemas, chunk indexes and a
summary section, so a log opens in Foxglove as is."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
from foxglove_schemas_protobuf.LocationFix_pb2 import LocationFix
from mcap.well_known import MessageEncoding, SchemaEncoding
from mcap.writer import CompressionType, Writer
from mcap_protobuf.schema import build_file_descriptor_set

from dataloop.fleet import contract, schemas
from dataloop.lake.layout import validate_id

EVENT_TYPES = {name: i for i, name in enumerate(schemas.enum_names("EventType"))}
OBJECT_CLASSES = {name: i for i, name in enumerate(schemas.enum_names("ObjectClass"))}
GEARS = {name: i for i, name in enumerate(schemas.enum_names("Gear"))}
TURN_SIGNALS = {name: i for i, name in enumerate(schemas.enum_names("TurnSignal"))}


def _ts(msg_ts: Any, t_ns: int) -> None:
    msg_ts.seconds, msg_ts.nanos = divmod(t_ns, 1_000_000_000)


class DriveLogWriter:
    """One drive segment. Use as a context manager; times are UTC nanoseconds."""

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
        use_chunking: bool = True,
        channels: Sequence[contract.ChannelSpec] = contract.CHANNELS,
        **mcap_options: Any,
    ):
        """``mcap_options``: any other option of ``mcap.writer.Writer`` (index types,
        statistics, summary offsets, repeated schemas and channels, CRCs)."""
        validate_id(vehicle, "vehicle")
        validate_id(drive, "drive")
        self.path = Path(path)
        self._file = self.path.open("wb")
        self._writer = Writer(
            self._file,
            chunk_size=chunk_size,
            compression=compression,
            use_chunking=use_chunking,
            **mcap_options,
        )
        self._writer.start(profile=contract.PROFILE, library="dataloop")
        self._channel_ids: dict[str, int] = {}
        self._seq: dict[str, int] = {}
        for spec in channels:
            self._register(spec.topic, schemas.MESSAGE_CLASSES[spec.schema])
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

    def _register(self, topic: str, cls: Any) -> None:
        schema_id = self._writer.register_schema(
            name=cls.DESCRIPTOR.full_name,
            encoding=SchemaEncoding.Protobuf,
            data=build_file_descriptor_set(cls).SerializeToString(),
        )
        self._channel_ids[topic] = self._writer.register_channel(
            topic=topic, message_encoding=MessageEncoding.Protobuf, schema_id=schema_id
        )
        self._seq[topic] = 0

    def write(self, topic: str, t_ns: int, message: Any) -> None:
        """Write any contract message on its topic."""
        seq = self._seq[topic]
        self._seq[topic] = seq + 1
        self._writer.add_message(
            channel_id=self._channel_ids[topic],
            log_time=t_ns,
            publish_time=t_ns,
            sequence=seq,
            data=message.SerializeToString(),
        )

    # -- one helper per channel, in contract units --------------------------------------
    def camera(self, t_ns: int, jpeg: bytes, frame_id: str = "camera_front") -> None:
        msg = CompressedImage(frame_id=frame_id, data=jpeg, format="jpeg")
        _ts(msg.timestamp, t_ns)
        self.write(contract.CAMERA.topic, t_ns, msg)

    def gnss(self, t_ns: int, lat: float, lon: float, alt: float = 0.0, sigma_m: float = 0.5):
        msg = LocationFix(
            frame_id="gnss",
            latitude=lat,
            longitude=lon,
            altitude=alt,
            position_covariance=[sigma_m**2, 0, 0, 0, sigma_m**2, 0, 0, 0, (2 * sigma_m) ** 2],
            position_covariance_type=LocationFix.DIAGONAL_KNOWN,
        )
        _ts(msg.timestamp, t_ns)
        self.write(contract.GNSS.topic, t_ns, msg)

    def imu(self, t_ns: int, accel: Sequence[float], gyro: Sequence[float]) -> None:
        ax, ay, az = accel
        gx, gy, gz = gyro
        msg = schemas.Imu(accel_x=ax, accel_y=ay, accel_z=az, gyro_x=gx, gyro_y=gy, gyro_z=gz)
        self.write(contract.IMU.topic, t_ns, msg)

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
        msg = schemas.VehicleState(
            speed_mps=speed_mps,
            steering_angle_rad=steering_angle_rad,
            accelerator=accelerator,
            brake=brake,
            yaw_rate_radps=yaw_rate_radps,
            gear=GEARS[gear],
            turn_signal=TURN_SIGNALS[turn_signal],
        )
        self.write(contract.VEHICLE_STATE.topic, t_ns, msg)

    def objects(self, t_ns: int, objects: Iterable[dict[str, Any]]) -> None:
        """Objects as dicts with the PerceivedObject fields; ``object_class`` by name."""
        msg = schemas.PerceptionObjects()
        for o in objects:
            msg.objects.add(**{**o, "object_class": OBJECT_CLASSES[o["object_class"]]})
        self.write(contract.OBJECTS.topic, t_ns, msg)

    def event(self, t_ns: int, event_type: str, detail: str = "") -> None:
        msg = schemas.DriveEvent(type=EVENT_TYPES[event_type], detail=detail)
        self.write(contract.EVENTS.topic, t_ns, msg)

    def lane(
        self,
        t_ns: int,
        *,
        lateral_offset_m: float,
        heading_error_rad: float,
        lane_width_m: float,
        confidence: float,
    ) -> None:
        msg = schemas.LaneEstimate(
            lateral_offset_m=lateral_offset_m,
            heading_error_rad=heading_error_rad,
            lane_width_m=lane_width_m,
            confidence=confidence,
        )
        self.write(contract.LANE.topic, t_ns, msg)

    @property
    def topics(self) -> list[str]:
        return list(self._channel_ids)

    def add_metadata(self, name: str, data: dict[str, str]) -> None:
        """An MCAP metadata record (a string map), e.g. the simulator's ground truth."""
        self._writer.add_metadata(name, data)

    def add_attachment(self, name: str, media_type: str, data: bytes, t_ns: int = 0) -> None:
        """An MCAP attachment, e.g. the simulator's ground-truth object tracks."""
        self._writer.add_attachment(t_ns, t_ns, name, media_type, data)

    def close(self) -> None:
        if not self._closed:
            self._writer.finish()
            self._file.close()
            self._closed = True

    def __enter__(self) -> DriveLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

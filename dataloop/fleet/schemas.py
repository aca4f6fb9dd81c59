"""Protobuf schemas of the drive-log channels that have no Foxglove well-known schema.

They are declared here as data and built into a descriptor at import time, so there is no
generated code to keep in step with the protobuf runtime. Each schema is embedded in every log
as a FileDescriptorSet, so Foxglove and any protobuf reader decode the log without this package.
"""

from __future__ import annotations

from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
from foxglove_schemas_protobuf.LocationFix_pb2 import LocationFix
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_PACKAGE = "dataloop"
_D = descriptor_pb2.FieldDescriptorProto

ENUMS: dict[str, list[str]] = {
    "Gear": ["GEAR_UNKNOWN", "GEAR_PARK", "GEAR_REVERSE", "GEAR_NEUTRAL", "GEAR_DRIVE"],
    "TurnSignal": ["TURN_OFF", "TURN_LEFT", "TURN_RIGHT", "TURN_HAZARD"],
    "ObjectClass": [
        "CLASS_UNKNOWN",
        "CLASS_CAR",
        "CLASS_TRUCK",
        "CLASS_PEDESTRIAN",
        "CLASS_CYCLIST",
        "CLASS_MOTORCYCLE",
    ],
    "EventType": [
        "EVENT_UNKNOWN",
        "EVENT_DISENGAGEMENT",
        "EVENT_HARD_BRAKE",
        "EVENT_AEB",
        "EVENT_MANUAL_TRIGGER",
    ],
}

# name -> [(field, type, label)]; type is a scalar name, an enum above or a message here.
MESSAGES: dict[str, list[tuple[str, str, str]]] = {
    "VehicleState": [
        ("speed_mps", "double", "optional"),
        ("steering_angle_rad", "double", "optional"),
        ("accelerator", "double", "optional"),
        ("brake", "double", "optional"),
        ("yaw_rate_radps", "double", "optional"),
        ("gear", "Gear", "optional"),
        ("turn_signal", "TurnSignal", "optional"),
    ],
    "Imu": [
        ("accel_x", "double", "optional"),
        ("accel_y", "double", "optional"),
        ("accel_z", "double", "optional"),
        ("gyro_x", "double", "optional"),
        ("gyro_y", "double", "optional"),
        ("gyro_z", "double", "optional"),
    ],
    "PerceivedObject": [
        ("id", "uint32", "optional"),
        ("object_class", "ObjectClass", "optional"),
        ("x", "double", "optional"),
        ("y", "double", "optional"),
        ("vx", "double", "optional"),
        ("vy", "double", "optional"),
        ("length", "double", "optional"),
        ("width", "double", "optional"),
        ("height", "double", "optional"),
        ("heading", "double", "optional"),
        ("confidence", "double", "optional"),
    ],
    "PerceptionObjects": [("objects", "PerceivedObject", "repeated")],
    "DriveEvent": [("type", "EventType", "optional"), ("detail", "string", "optional")],
    "LaneEstimate": [
        ("lateral_offset_m", "double", "optional"),
        ("heading_error_rad", "double", "optional"),
        ("lane_width_m", "double", "optional"),
        ("confidence", "double", "optional"),
    ],
}

_SCALARS = {"double": _D.TYPE_DOUBLE, "uint32": _D.TYPE_UINT32, "string": _D.TYPE_STRING}


def _build_file() -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto(
        name="dataloop/drive_log.proto", package=_PACKAGE, syntax="proto3"
    )
    for name, values in ENUMS.items():
        e = f.enum_type.add(name=name)
        for number, value in enumerate(values):
            e.value.add(name=value, number=number)
    for name, fields in MESSAGES.items():
        m = f.message_type.add(name=name)
        for number, (field, type_name, label) in enumerate(fields, start=1):
            fd = m.field.add(name=field, number=number, json_name=field)
            fd.label = _D.LABEL_REPEATED if label == "repeated" else _D.LABEL_OPTIONAL
            if type_name in _SCALARS:
                fd.type = _SCALARS[type_name]
            elif type_name in ENUMS:
                fd.type = _D.TYPE_ENUM
                fd.type_name = f".{_PACKAGE}.{type_name}"
            else:
                fd.type = _D.TYPE_MESSAGE
                fd.type_name = f".{_PACKAGE}.{type_name}"
    return f


_pool = descriptor_pool.Default()
try:
    _file = _pool.FindFileByName("dataloop/drive_log.proto")
except KeyError:
    _file = _pool.Add(_build_file()) or _pool.FindFileByName("dataloop/drive_log.proto")


def _cls(name: str):
    return message_factory.GetMessageClass(_pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))


VehicleState = _cls("VehicleState")
Imu = _cls("Imu")
PerceivedObject = _cls("PerceivedObject")
PerceptionObjects = _cls("PerceptionObjects")
DriveEvent = _cls("DriveEvent")
LaneEstimate = _cls("LaneEstimate")

MESSAGE_CLASSES = {
    cls.DESCRIPTOR.full_name: cls
    for cls in (
        CompressedImage,
        LocationFix,
        VehicleState,
        Imu,
        PerceptionObjects,
        DriveEvent,
        LaneEstimate,
    )
}
"""Every schema a drive log may carry, by its full name."""


def enum_names(enum: str) -> list[str]:
    """Value names of an enum, index = wire value, with the prefix dropped (``GEAR_DRIVE`` ->
    ``drive``)."""
    return [v.split("_", 1)[1].lower() for v in ENUMS[enum]]

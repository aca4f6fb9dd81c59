"""ROS 2 message definitions of the standard types a vehicle records, as ``.msg`` text.

``definition(name)`` is the text a ROS 2 MCAP embeds as a channel's ``ros2msg`` schema: the
type's own fields, then each type it uses under a ``MSG: pkg/Type`` header, separated by a
line of ``=`` (the layout rosbag2 writes). The simulated ROS 2 fleet writes with these, and
ingest checks the built-in adapters' field paths against them.
"""

from __future__ import annotations

MSGS: dict[str, str] = {
    "builtin_interfaces/Time": "int32 sec\nuint32 nanosec",
    "std_msgs/Header": "builtin_interfaces/Time stamp\nstring frame_id",
    "geometry_msgs/Vector3": "float64 x\nfloat64 y\nfloat64 z",
    "geometry_msgs/Point": "float64 x\nfloat64 y\nfloat64 z",
    "geometry_msgs/Quaternion": "float64 x 0\nfloat64 y 0\nfloat64 z 0\nfloat64 w 1",
    "geometry_msgs/Pose": "Point position\nQuaternion orientation",
    "geometry_msgs/PoseWithCovariance": "Pose pose\nfloat64[36] covariance",
    "geometry_msgs/Twist": "Vector3 linear\nVector3 angular",
    "geometry_msgs/TwistWithCovariance": "Twist twist\nfloat64[36] covariance",
    "geometry_msgs/TwistStamped": "std_msgs/Header header\nTwist twist",
    "geometry_msgs/Transform": "Vector3 translation\nQuaternion rotation",
    "geometry_msgs/TransformStamped": (
        "std_msgs/Header header\nstring child_frame_id\nTransform transform"
    ),
    "tf2_msgs/TFMessage": "geometry_msgs/TransformStamped[] transforms",
    "nav_msgs/Odometry": (
        "std_msgs/Header header\nstring child_frame_id\ngeometry_msgs/PoseWithCovariance pose\n"
        "geometry_msgs/TwistWithCovariance twist"
    ),
    "sensor_msgs/NavSatStatus": (
        "int8 STATUS_NO_FIX = -1\nint8 STATUS_FIX = 0\nint8 STATUS_SBAS_FIX = 1\n"
        "int8 STATUS_GBAS_FIX = 2\nint8 status\nuint16 SERVICE_GPS = 1\n"
        "uint16 SERVICE_GLONASS = 2\nuint16 SERVICE_COMPASS = 4\nuint16 SERVICE_GALILEO = 8\n"
        "uint16 service"
    ),
    "sensor_msgs/NavSatFix": (
        "std_msgs/Header header\nNavSatStatus status\nfloat64 latitude\nfloat64 longitude\n"
        "float64 altitude\nfloat64[9] position_covariance\nuint8 COVARIANCE_TYPE_UNKNOWN = 0\n"
        "uint8 COVARIANCE_TYPE_APPROXIMATED = 1\nuint8 COVARIANCE_TYPE_DIAGONAL_KNOWN = 2\n"
        "uint8 COVARIANCE_TYPE_KNOWN = 3\nuint8 position_covariance_type"
    ),
    "sensor_msgs/Imu": (
        "std_msgs/Header header\ngeometry_msgs/Quaternion orientation\n"
        "float64[9] orientation_covariance\ngeometry_msgs/Vector3 angular_velocity\n"
        "float64[9] angular_velocity_covariance\ngeometry_msgs/Vector3 linear_acceleration\n"
        "float64[9] linear_acceleration_covariance"
    ),
    "sensor_msgs/CompressedImage": "std_msgs/Header header\nstring format\nuint8[] data",
    "sensor_msgs/RegionOfInterest": (
        "uint32 x_offset\nuint32 y_offset\nuint32 height\nuint32 width\nbool do_rectify"
    ),
    "sensor_msgs/CameraInfo": (
        "std_msgs/Header header\nuint32 height\nuint32 width\nstring distortion_model\n"
        "float64[] d\nfloat64[9] k\nfloat64[9] r\nfloat64[12] p\nuint32 binning_x\n"
        "uint32 binning_y\nRegionOfInterest roi"
    ),
    "sensor_msgs/PointField": (
        "uint8 INT8 = 1\nuint8 UINT8 = 2\nuint8 INT16 = 3\nuint8 UINT16 = 4\nuint8 INT32 = 5\n"
        "uint8 UINT32 = 6\nuint8 FLOAT32 = 7\nuint8 FLOAT64 = 8\nstring name\nuint32 offset\n"
        "uint8 datatype\nuint32 count"
    ),
    "sensor_msgs/PointCloud2": (
        "std_msgs/Header header\nuint32 height\nuint32 width\nPointField[] fields\n"
        "bool is_bigendian\nuint32 point_step\nuint32 row_step\nuint8[] data\nbool is_dense"
    ),
    "sensor_msgs/Image": (
        "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\n"
        "uint8 is_bigendian\nuint32 step\nuint8[] data"
    ),
    # The simulated fleet's own messages (assets/ingest/adapters/dataloop_ros2.yaml maps
    # them): a vehicle report in the units a CAN gateway reports, and perception outputs.
    "dataloop_msgs/VehicleReport": (
        "std_msgs/Header header\nfloat64 speed_kph\nfloat64 steering_wheel_deg\n"
        "float64 throttle_pct\nfloat64 brake_pct\n"
        "float64 yaw_rate_dps\nuint8 GEAR_PARK = 1\nuint8 GEAR_REVERSE = 2\n"
        "uint8 GEAR_NEUTRAL = 3\nuint8 GEAR_DRIVE = 4\nuint8 gear\nuint8 TURN_OFF = 0\n"
        "uint8 TURN_LEFT = 1\nuint8 TURN_RIGHT = 2\nuint8 TURN_HAZARD = 3\nuint8 turn_signal"
    ),
    "dataloop_msgs/PerceivedObject": (
        "uint32 id\nstring label\nfloat64 x\nfloat64 y\nfloat64 vx\nfloat64 vy\n"
        "float64 length\nfloat64 width\nfloat64 height\nfloat64 heading\nfloat64 confidence"
    ),
    "dataloop_msgs/PerceivedObjects": "std_msgs/Header header\nPerceivedObject[] objects",
    "dataloop_msgs/LaneEstimate": (
        "std_msgs/Header header\nfloat64 lateral_offset_m\nfloat64 heading_error_rad\n"
        "float64 lane_width_m\nfloat64 confidence"
    ),
    "dataloop_msgs/DriveEvent": "std_msgs/Header header\nstring type\nstring detail",
}
"""``pkg/Type`` -> its own fields (a type of the same package may be named without one)."""


def _key(type_name: str, package: str) -> str | None:
    parts = type_name.split("[")[0].split("/")
    key = f"{parts[0]}/{parts[-1]}" if len(parts) > 1 else f"{package}/{parts[0]}"
    return key if key in MSGS else None


def _uses(key: str) -> list[str]:
    package = key.split("/")[0]
    out = []
    for line in MSGS[key].splitlines():
        dep = _key(line.split()[0], package)
        if dep and dep not in out:
            out.append(dep)
    return out


def definition(name: str) -> str:
    """The ``ros2msg`` schema text of ``pkg/msg/Type`` (``pkg/Type`` accepted)."""
    pkg, *_, typ = name.split("/")
    root = f"{pkg}/{typ}"
    order: list[str] = []

    def visit(key: str) -> None:
        for dep in _uses(key):
            if dep not in order:
                order.append(dep)
                visit(dep)

    visit(root)
    sep = "=" * 80
    return "\n".join([MSGS[root], *(f"{sep}\nMSG: {k}\n{MSGS[k]}" for k in order)]) + "\n"


def ros2_name(key: str) -> str:
    """``pkg/Type`` -> ``pkg/msg/Type``, the name a ROS 2 schema carries."""
    pkg, typ = key.split("/")
    return f"{pkg}/msg/{typ}"

"""What the simulated fleet does, and how often: corner cases and faults at controllable rates."""

from __future__ import annotations

from dataclasses import dataclass, field

from dataloop.fleet.geo import DEFAULT_ORIGIN

CORNER_CASES = ("cut_in", "hard_brake", "near_miss", "stalled_vehicle", "pedestrian_crossing")
SIGNAL_FAULTS = (
    "dropped_frames",
    "camera_freeze",
    "gnss_jump",
    "clock_backwards",
    "nan_signal",
    "out_of_range",
)
FILE_FAULTS = ("truncated_file", "missing_channel")


@dataclass(frozen=True)
class SimConfig:
    origin: tuple[float, float] = DEFAULT_ORIGIN
    """City origin (lat, lon) that local coordinates are projected around."""
    roads: dict[str, float] = field(
        default_factory=lambda: {
            "highway": 0.55,
            "merge": 0.15,
            "roundabout": 0.15,
            "intersection": 0.15,
        }
    )
    conditions: dict[str, float] = field(
        default_factory=lambda: {
            "day": 0.45,
            "dusk": 0.12,
            "night": 0.18,
            "rain": 0.1,
            "fog": 0.07,
            "snow": 0.05,
            "flooded": 0.03,
        }
    )
    corner_cases_per_hour: dict[str, float] = field(
        default_factory=lambda: {
            "cut_in": 30.0,
            "hard_brake": 30.0,
            "stalled_vehicle": 10.0,
            "pedestrian_crossing": 10.0,
        }
    )
    signal_faults_per_hour: dict[str, float] = field(
        default_factory=lambda: {
            "dropped_frames": 6.0,
            "camera_freeze": 4.0,
            "gnss_jump": 6.0,
            "clock_backwards": 2.0,
            "nan_signal": 4.0,
            "out_of_range": 4.0,
        }
    )
    file_faults_per_drive: dict[str, float] = field(
        default_factory=lambda: {"truncated_file": 0.02, "missing_channel": 0.02}
    )
    ttc_takeover_s: float = 1.5
    """The safety driver takes over below this time to collision."""
    crosswind_rad: float = 0.004
    """Crosswind and road camber turn the car as a steering angle of this size would
    (stationary std of a 1 s Ornstein-Uhlenbeck process, road-wheel rad), whoever drives;
    the driver corrects. What makes lane keeping learnable from logs: an ideal controller on
    an ideal road stays centred and its steering teaches no correction. The disturbance is
    not in the logged steering, so every logged angle is the driver's response to what the
    car perceives (noise added to the steering itself would be a label the observation
    cannot explain, and would teach a weaker correction than the driver's)."""
    near_miss_ttc_s: float = 2.0
    camera_size: tuple[int, int] = (320, 192)
    model_version: str = "baseline"
    log_format: str = "protobuf"
    """How the logs are recorded: ``protobuf`` (the dataloop contract) or ``ros2`` (ROS 2
    MCAP through mcap-ros2-support's writer, dataloop/fleet/ros2_log.py)."""

    def without_faults(self) -> SimConfig:
        from dataclasses import replace

        return replace(
            self,
            signal_faults_per_hour={k: 0.0 for k in SIGNAL_FAULTS},
            file_faults_per_drive={k: 0.0 for k in FILE_FAULTS},
        )

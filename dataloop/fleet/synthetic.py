"""A fast kinematic drive-log generator that fills every contract channel (about a second per
drive-minute, against several for the traffic simulator). Tests and the ingest benchmark use
it; the fleet simulator (dataloop.fleet.simulator) makes the realistic logs.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dataloop.fleet.geo import DEFAULT_ORIGIN, local_to_latlon
from dataloop.fleet.logwriter import DriveLogWriter
from dataloop.fleet.ros2_log import Ros2DriveLogWriter


@dataclass
class _Other:
    id: int
    lane_offset: float
    s: float  # longitudinal distance ahead of ego, m
    speed: float
    object_class: str
    length: float
    width: float


def _frame(rng: np.random.Generator, objects: list[_Other], size: tuple[int, int]) -> bytes:
    w, h = size
    img = Image.new("RGB", (w, h), (120, 160, 210))
    d = ImageDraw.Draw(img)
    d.rectangle([0, h // 2, w, h], fill=(70, 70, 75))
    d.polygon([(w * 0.45, h // 2), (w * 0.55, h // 2), (w, h), (0, h)], fill=(90, 90, 95))
    for o in objects:
        if 2 < o.s < 120:
            scale = 8.0 / o.s
            cx = w / 2 + o.lane_offset * scale * w / 4
            bw = o.width * scale * w / 8
            bh = bw * 0.8
            cy = h / 2 + scale * h / 3
            d.rectangle([cx - bw, cy - bh, cx + bw, cy], fill=(180, 40, 40))
    arr = np.asarray(img, dtype=np.int16) + rng.integers(-6, 7, size=(h, w, 1), dtype=np.int16)
    buf = io.BytesIO()
    Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def write_synthetic_drive(
    path: str | Path,
    *,
    vehicle: str,
    drive: str,
    start_ns: int,
    duration_s: float = 60.0,
    seed: int = 0,
    camera_size: tuple[int, int] = (320, 192),
    origin: tuple[float, float] = DEFAULT_ORIGIN,
    log_format: str = "protobuf",
) -> Path:
    """Write one drive segment of ``duration_s`` seconds, as the contract's protobuf or as
    ROS 2 (``log_format``); returns the path."""
    rng = np.random.default_rng(seed)
    dt = 0.01  # 100 Hz base clock (IMU rate)
    steps = int(round(duration_s / dt))
    x = y = yaw = 0.0
    speed = float(rng.uniform(12, 25))
    accel = 0.0
    steer = 0.0
    others = [
        _Other(
            i + 1,
            float(rng.choice([-3.5, 0.0, 3.5])),
            float(rng.uniform(-40, 90)),
            speed + float(rng.normal(0, 2)),
            str(rng.choice(["car", "car", "car", "truck", "motorcycle"])),
            4.5,
            1.9,
        )
        for i in range(int(rng.integers(3, 7)))
    ]
    hard_brake_at = float(rng.uniform(0.3, 0.8)) * duration_s if rng.random() < 0.5 else None
    takeover_at = float(rng.uniform(0.2, 0.9)) * duration_s if rng.random() < 0.3 else None
    writer = Ros2DriveLogWriter if log_format == "ros2" else DriveLogWriter
    with writer(path, vehicle=vehicle, drive=drive) as log:
        for k in range(steps):
            t = k * dt
            t_ns = start_ns + int(round(t * 1e9))
            if k % 100 == 0:  # a new manoeuvre every second
                accel = float(rng.normal(0, 0.6))
                steer = float(np.clip(rng.normal(0, 0.01), -0.05, 0.05))
            braking = hard_brake_at is not None and hard_brake_at <= t < hard_brake_at + 1.5
            a = -5.5 if braking else accel
            speed = max(0.0, speed + a * dt)
            yaw_rate = speed * math.tan(steer) / 2.8
            yaw += yaw_rate * dt
            x += speed * math.cos(yaw) * dt
            y += speed * math.sin(yaw) * dt
            for o in others:
                o.s += (o.speed - speed) * dt
            log.imu(
                t_ns,
                (a + rng.normal(0, 0.05), speed * yaw_rate + rng.normal(0, 0.05), 9.81),
                (rng.normal(0, 0.002), rng.normal(0, 0.002), yaw_rate),
            )
            if k % 2 == 0:
                log.vehicle_state(
                    t_ns,
                    speed_mps=speed,
                    steering_angle_rad=steer,
                    accelerator=max(0.0, a) / 3.0,
                    brake=min(1.0, max(0.0, -a) / 8.0),
                    yaw_rate_radps=yaw_rate,
                )
            if k % 10 == 0:
                lat, lon = local_to_latlon(x, y, origin)
                log.gnss(t_ns, lat + rng.normal(0, 2e-6), lon + rng.normal(0, 2e-6), 520.0)
                visible = [o for o in others if -60 < o.s < 150]
                log.objects(
                    t_ns,
                    [
                        {
                            "id": o.id,
                            "object_class": o.object_class,
                            "x": o.s,
                            "y": o.lane_offset,
                            "vx": o.speed,
                            "vy": 0.0,
                            "length": o.length,
                            "width": o.width,
                            "height": 1.5,
                            "heading": 0.0,
                            "confidence": float(rng.uniform(0.6, 0.99)),
                        }
                        for o in visible
                    ],
                )
                log.camera(t_ns, _frame(rng, visible, camera_size))
            if braking and abs(t - hard_brake_at) < dt / 2:
                log.event(t_ns, "hard_brake", "decel 5.5 m/s^2")
            if takeover_at is not None and abs(t - takeover_at) < dt / 2:
                log.event(t_ns, "disengagement", "safety driver takeover")
    return Path(path)

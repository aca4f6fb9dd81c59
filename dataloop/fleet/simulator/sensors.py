"""The simulated car's sensors: ground truth -> contract messages, with realistic noise,
perception dropouts and ghosts, and the planned faults applied on the way to the log."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from dataloop.fleet import contract
from dataloop.fleet.logwriter import DriveLogWriter
from dataloop.fleet.ros2_log import Ros2DriveLogWriter
from dataloop.fleet.simulator.faults import FaultPlan
from dataloop.fleet.simulator.traffic import DT

NS = 1_000_000_000
IMU_PER_STEP = 10  # 100 Hz
CAN_PER_STEP = 5  # 50 Hz
DROPOUT = 0.03
ID_SWITCH_AFTER_DROPOUT = 0.6
PERCEPTION_BY_CONDITION = {  # (noise, dropout) multipliers: cameras see less at night, in fog
    "day": (1.0, 1.0),
    "dusk": (1.2, 1.3),
    "night": (1.6, 2.0),
    "rain": (1.4, 1.7),
    "fog": (1.8, 2.5),
    "snow": (1.5, 2.0),
    "flooded": (1.3, 1.5),
}
GHOSTS_PER_MINUTE = 1.0
LANE_SIGMA_M = 0.05
LANE_SIGMA_RAD = 0.004


class Sensors:
    """Writes one drive's sensor channels; every timestamp passes through ``stamp`` (the
    vehicle clock, which a fault may step backwards)."""

    def __init__(
        self,
        log: DriveLogWriter | Ros2DriveLogWriter,
        rng: np.random.Generator,
        plan: FaultPlan,
        t0_ns: int,
        condition: str = "day",
    ):
        self.log, self.rng, self.plan, self.t0_ns = log, rng, plan, t0_ns
        self._noise, self._dropout = PERCEPTION_BY_CONDITION.get(condition, (1.0, 1.0))
        self.topics = set(log.topics)
        self._clock_back_ns = 0
        self._clock_steps = [(a, b - a) for a, b, k in plan.windows if k == "clock_backwards"]
        self._frozen: bytes | None = None
        self._ghosts: list[dict] = []
        self._jump: tuple = (None, 0.0)
        self._onboard_id: dict[int, int] = {}
        self._lost: set[int] = set()
        self._next_id = 1
        self.last_hard_brake: float | None = None

    def _t(self, t_ns: int) -> float:
        return (t_ns - self.t0_ns) / NS

    def stamp(self, t_ns: int) -> int:
        t = self._t(t_ns)
        while self._clock_steps and self._clock_steps[0][0] <= t:
            self._clock_back_ns += int(self._clock_steps.pop(0)[1] * NS)
        return t_ns - self._clock_back_ns

    def _on(self, channel: contract.ChannelSpec) -> bool:
        return channel.topic in self.topics

    # -- perception ---------------------------------------------------------------------
    def perceive(self, truth: list[dict]) -> list[dict]:
        """Onboard perception: noisy positions and speeds, dropouts, short-lived ghosts."""
        rng = self.rng
        out = []
        for o in truth:
            if rng.random() < DROPOUT * self._dropout:
                self._lost.add(o["id"])
                continue
            # The onboard tracker keeps an id while it sees the object; after a dropout it
            # often starts a new track (an id switch, which offboard association repairs).
            if o["id"] not in self._onboard_id or (
                o["id"] in self._lost and rng.random() < ID_SWITCH_AFTER_DROPOUT
            ):
                self._onboard_id[o["id"]] = self._next_id
                self._next_id += 1
            self._lost.discard(o["id"])
            dist = math.hypot(o["x"], o["y"])
            sigma = (0.15 + 0.01 * dist) * self._noise
            out.append(
                {
                    **{k: o[k] for k in ("object_class", "length", "width", "height")},
                    "id": self._onboard_id[o["id"]],
                    "x": o["x"] + rng.normal(0, sigma),
                    "y": o["y"] + rng.normal(0, sigma / 2),
                    "vx": o["vx"] + rng.normal(0, 0.3),
                    "vy": o["vy"] + rng.normal(0, 0.15),
                    "heading": o["heading"] + rng.normal(0, 0.02),
                    "confidence": float(
                        np.clip(0.98 - dist / 250 + rng.normal(0, 0.03), 0.3, 0.99)
                    ),
                }
            )
        if rng.random() < GHOSTS_PER_MINUTE * DT / 60:
            self._ghosts.append(
                {
                    "id": int(rng.integers(50_000, 60_000)),
                    "object_class": "unknown",
                    "x": float(rng.uniform(10, 70)),
                    "y": float(rng.uniform(-6, 6)),
                    "vx": 0.0,
                    "vy": 0.0,
                    "length": 1.0,
                    "width": 1.0,
                    "height": 1.0,
                    "heading": 0.0,
                    "confidence": float(rng.uniform(0.3, 0.5)),
                    "frames_left": int(rng.integers(2, 6)),
                }
            )
        for g in self._ghosts:
            g["frames_left"] -= 1
            out.append({k: v for k, v in g.items() if k != "frames_left"})
        self._ghosts = [g for g in self._ghosts if g["frames_left"] > 0]
        return out

    def lane(self, t_ns: int, lateral: float, heading_error: float, width: float) -> dict:
        """Onboard lane perception, logged at 10 Hz: the estimate the policy acts on (noisier
        when the camera sees less)."""
        rng, k = self.rng, self._noise
        estimate = {
            "lateral_offset_m": lateral + rng.normal(0, LANE_SIGMA_M * k),
            "heading_error_rad": heading_error + rng.normal(0, LANE_SIGMA_RAD * k),
            "lane_width_m": width + rng.normal(0, 2 * LANE_SIGMA_M * k),
            "confidence": float(np.clip(0.97 - 0.1 * (k - 1) + rng.normal(0, 0.02), 0.3, 0.99)),
        }
        if self._on(contract.LANE):
            self.log.lane(self.stamp(t_ns), **estimate)
        return estimate

    # -- writers --------------------------------------------------------------------------
    def objects(self, t_ns: int, perceived: list[dict]) -> int:
        """Log the perceived objects; returns the (vehicle clock) time they were logged at."""
        stamped = self.stamp(t_ns)
        if self._on(contract.OBJECTS):
            self.log.objects(stamped, perceived)
        return stamped

    def frame(self, t_ns: int, render: Callable[[], bytes]) -> None:
        if not self._on(contract.CAMERA):
            return
        t = self._t(t_ns)
        if self.plan.active("dropped_frames", t):
            return
        if self.plan.active("camera_freeze", t) and self._frozen is not None:
            jpeg = self._frozen
        else:
            jpeg = render()
        self._frozen = jpeg
        self.log.camera(self.stamp(t_ns), jpeg)

    def gnss(self, t_ns: int, lat: float, lon: float) -> None:
        if not self._on(contract.GNSS):
            return
        deg = 1 / 111_320  # ~1 m of latitude
        lat += self.rng.normal(0, 0.5) * deg
        lon += self.rng.normal(0, 0.5) * deg / math.cos(math.radians(lat))
        if window := self.plan.window("gnss_jump", self._t(t_ns)):
            if self._jump[0] != window:  # one offset per jump, as multipath gives
                self._jump = (window, self.rng.choice([-1, 1]) * self.rng.uniform(50, 300))
            lat += self._jump[1] * deg
        self.log.gnss(self.stamp(t_ns), lat, lon, 520.0 + self.rng.normal(0, 1.0))

    def event(self, t_ns: int, kind: str, detail: str) -> None:
        self.log.event(self.stamp(t_ns), kind, detail)

    def high_rate(
        self,
        t_ns: int,
        v0: float,
        v1: float,
        accel: float,
        yaw_rate: float,
        steering: float,
        turn_signal: str = "off",
    ) -> None:
        """IMU at 100 Hz and CAN vehicle state at 50 Hz over one simulation step."""
        rng = self.rng
        t = self._t(t_ns)
        nan = self.plan.active("nan_signal", t)
        wild = self.plan.active("out_of_range", t)
        if self._on(contract.IMU):
            for j in range(IMU_PER_STEP):
                v = v0 + (v1 - v0) * j / IMU_PER_STEP
                ax = accel + rng.normal(0, 0.05)
                self.log.imu(
                    self.stamp(t_ns + j * NS // 100),
                    (
                        200.0 if wild else ax,
                        v * yaw_rate + rng.normal(0, 0.05),
                        9.81 + rng.normal(0, 0.03),
                    ),
                    (rng.normal(0, 0.002), rng.normal(0, 0.002), yaw_rate + rng.normal(0, 0.002)),
                )
        for j in range(CAN_PER_STEP):
            v = v0 + (v1 - v0) * j / CAN_PER_STEP
            speed = float("nan") if nan else (150.0 if wild else max(0.0, v + rng.normal(0, 0.02)))
            self.log.vehicle_state(
                self.stamp(t_ns + j * NS // 50),
                speed_mps=speed,
                steering_angle_rad=steering,
                accelerator=float(np.clip(accel / 3.0, 0, 1)),
                brake=float(np.clip(-accel / 8.0, 0, 1)),
                yaw_rate_radps=yaw_rate,
                turn_signal=turn_signal,
            )

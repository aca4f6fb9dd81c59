"""What actually happened around the ego, from the simulator's privileged state: the truth
that mined scenarios are scored against. An injected corner case may not materialise (the
ego changed lanes first), and traffic makes some on its own (a lead vehicle brakes hard
after a reset); the witness records both the same way."""

from __future__ import annotations

from dataloop.fleet.simulator.traffic import DT, World

CUT_IN_AHEAD_M = 25.0
EGO_SETTLED_S = 2.0
"""A cut-in counts when the ego has kept its lane this long: a vehicle moving into the lane
the ego is leaving (or entering) has not cut in. The ego may swerve afterwards."""
HARD_BRAKE_MPS2 = -5.0
STALLED_S = 2.0


class Witness:
    def __init__(self) -> None:
        self.events: list[dict] = []
        self._lane: dict[int, tuple] = {}
        self._speed: dict[int, float] = {}
        self._stopped_since: dict[int, float] = {}
        self._last: dict[tuple[str, int], float] = {}
        self._ego_moved = -1e9

    def _record(self, kind: str, t: float, object_id: int, every_s: float) -> None:
        last = self._last.get((kind, object_id))
        if last is None or t - last > every_s:
            self.events.append({"type": kind, "t": round(t, 2), "object_id": object_id})
        self._last[(kind, object_id)] = t

    def observe(self, world: World) -> None:
        """Call once per step, after the world stepped."""
        ego_lane, t = world.ego.lane_index, world.t
        if world.ego.target_lane_index != ego_lane:
            self._ego_moved = t
        for v in world.others:
            oid = world.ids.setdefault(id(v), len(world.ids) + 1)
            x, y, _, _ = world.ego_frame(v.position[0], v.position[1], 0.0, 0.0)
            lane, before = v.lane_index, self._lane.get(oid)
            if (  # into the ego's lane from another (or from a merging ramp)
                before is not None
                and lane == ego_lane
                and before != lane
                and 0.0 < x < CUT_IN_AHEAD_M
                and t - self._ego_moved > EGO_SETTLED_S
            ):
                self._record("cut_in", t, oid, 10.0)
            accel = (v.speed - self._speed.get(oid, v.speed)) / DT
            if abs(y) < 1.6 and 0.0 < x < 60.0 and accel < HARD_BRAKE_MPS2:  # ahead in our path
                self._record("hard_brake", t, oid, 5.0)
            if v.speed < 0.5:
                since = self._stopped_since.setdefault(oid, t)
                if (
                    t - since >= STALLED_S
                    and 0.0 < x < 100.0
                    and abs(y) < 5.5
                    and world.ego.speed > 2.0
                ):
                    self._record("stalled_vehicle", t, oid, 30.0)
            else:
                self._stopped_since.pop(oid, None)
            self._lane[oid], self._speed[oid] = lane, v.speed
        for p in world.pedestrians:
            x, y, _, _ = world.ego_frame(p.x, p.y, 0.0, 0.0)
            if 0.0 < x < 60.0 and abs(y) < 6.0:
                self._record("pedestrian_crossing", t, p.id, 10.0)

"""Reference policies for checking the gate itself: each acts on the observation's
privileged expert control, so they are only ever evaluated, never released."""

from __future__ import annotations

import numpy as np

from dataloop.policy.observation import Control, Observation
from dataloop.simulation.scenario import Scenario

# ``act_batch(observation)``: the same decision for every scenario of a batched simulation
# at once (``dataloop.simulation.batched.runner.BatchObservation``: leading scenario axis,
# the expert's command as arrays); returns (acceleration, steering) arrays.


class AlwaysAccelerate:
    """Broken: full throttle, whatever is ahead (steers like the expert)."""

    model_version = "always-accelerate"

    def act(self, observation: Observation) -> Control:
        return Control(4.0, observation.expert.steering)

    reads_objects = False

    def act_batch(self, obs):
        return np.full_like(obs.expert_acceleration, 4.0), obs.expert_steering


class Timid:
    """Degraded: never faster than 60 % of the expert's command, brakes early."""

    model_version = "timid"

    def act(self, observation: Observation) -> Control:
        a = observation.expert.acceleration
        speed = float(observation.ego[-1, 0])
        return Control(
            min(a, 0.6 * a if a > 0 else a, 1.0 if speed < 15.0 else -1.0),
            observation.expert.steering,
        )

    reads_objects = False

    def act_batch(self, obs):
        a = obs.expert_acceleration
        speed = obs.ego[:, -1, 0]
        limit = np.where(speed < 15.0, 1.0, -1.0)
        return np.minimum(np.minimum(a, np.where(a > 0, 0.6 * a, a)), limit), obs.expert_steering


class RegressesOn:
    """The expert everywhere except in one scenario category, where it keeps braking gently
    (``brake`` m/s^2) and so loses progress."""

    def __init__(self, category: str = "merge", brake: float = -1.5):
        self.category = category
        self.brake = brake
        self.model_version = f"regresses-on-{category}{brake:+.1f}"
        self._bad = False

    def reset(self, scenario: Scenario) -> None:
        self._bad = scenario.category == self.category

    def act(self, observation: Observation) -> Control:
        if self._bad:
            return Control(
                min(self.brake, observation.expert.acceleration), observation.expert.steering
            )
        return observation.expert

    reads_objects = False

    def act_batch(self, obs):
        bad = obs.category == self.category
        a = obs.expert_acceleration
        return np.where(bad, np.minimum(self.brake, a), a), obs.expert_steering

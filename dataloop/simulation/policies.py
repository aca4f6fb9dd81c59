"""Reference policies for checking the gate itself: each acts on the observation's
privileged expert control, so they are only ever evaluated, never released."""

from __future__ import annotations

from dataloop.fleet.simulator.policy import Control, Observation
from dataloop.simulation.scenario import Scenario


class AlwaysAccelerate:
    """Broken: full throttle, whatever is ahead (steers like the expert)."""

    model_version = "always-accelerate"

    def act(self, observation: Observation) -> Control:
        return Control(4.0, observation.expert.steering)


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

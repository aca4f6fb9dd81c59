"""Scenario definitions: plain, frozen dataclasses that serialise to JSON, so any backend
(highway-env here, a batched simulator later, #13) can consume them.

A scenario is a road, a seed and a horizon; optionally the ego's initial speed and the
traffic around it (``agents``: initial states relative to the ego). Without ``agents`` the
road's own seeded random traffic drives; with them, the listed vehicles replace it and
highway-env's IDM/MOBIL drivers take them over from their initial state.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from dataloop.fleet.simulator.traffic import ROADS
from dataloop.lake.hashing import sha256_json

SOURCES = ("stock", "log", "variation")
CONDITIONS = {"clear": 1.0, "rain": 0.85, "fog": 0.8}
"""Condition -> speed factor of the traffic (drivers slow down); fog also limits what the
ego perceives to ``FOG_RANGE_M``."""
FOG_RANGE_M = 50.0


@dataclass(frozen=True)
class Agent:
    """A traffic vehicle's initial state relative to the ego."""

    dx: float
    """metres ahead of the ego along its lane (negative: behind)."""
    lane: int
    """lanes to the left of the ego's lane (negative: right)."""
    speed: float
    """m/s"""


@dataclass(frozen=True)
class Scenario:
    id: str
    category: str
    """What the gate compares per category: the road for stock scenarios, the mined
    scenario (cut_in, hard_brake, ...) for scenarios from logs and their variations."""
    road: str
    seed: int
    seconds: float
    source: str = "stock"
    condition: str = "clear"
    ego_speed: float | None = None
    agents: tuple[Agent, ...] | None = None
    origin: dict[str, Any] = field(default_factory=dict, compare=False)
    """Where it came from: the clip (vehicle, drive, start) or the parent scenario."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Scenario:
        agents = d.get("agents")
        return Scenario(
            **{
                **d,
                "agents": None if agents is None else tuple(Agent(**a) for a in agents),
            }
        )


def stock(roads: list[str], seeds: list[int], seconds: float) -> list[Scenario]:
    """Every road with each seed: highway-env's own seeded traffic."""
    return [
        Scenario(f"stock-{road}-{seed}", road, road, seed, seconds)
        for road in roads
        if road in ROADS
        for seed in seeds
    ]


def variations(base: Scenario, n: int, seed: int) -> list[Scenario]:
    """``n`` variations of a scenario rebuilt from a log: a vehicle added or removed, speeds
    and gaps perturbed, the condition changed. Reproducible for (base, seed)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, int(sha256_json(base.id)[:8], 16)]))
    out = []
    for i in range(n):
        agents = list(base.agents or ())
        kind = ("add", "remove", "perturb", "condition")[i % 4]
        condition = base.condition
        if kind == "add" or (kind == "remove" and not agents):
            agents.append(
                Agent(
                    float(rng.uniform(-30, 60)),
                    int(rng.integers(-1, 2)),
                    float(rng.uniform(15, 30)),
                )
            )
        elif kind == "remove":
            agents.pop(int(rng.integers(len(agents))))
        elif kind == "perturb":
            agents = [
                Agent(
                    a.dx * float(rng.uniform(0.7, 1.3)),
                    a.lane,
                    a.speed * float(rng.uniform(0.85, 1.15)),
                )
                for a in agents
            ]
        else:
            condition = str(rng.choice([c for c in CONDITIONS if c != base.condition]))
        ego = (
            base.ego_speed
            if base.ego_speed is None
            else base.ego_speed * float(rng.uniform(0.9, 1.1))
        )
        out.append(
            replace(
                base,
                id=f"{base.id}-v{i}-{kind}",
                source="variation",
                condition=condition,
                ego_speed=ego,
                agents=tuple(agents),
                origin={"parent": base.id, "variation": kind},
            )
        )
    return out


def suite_version(scenarios: list[Scenario]) -> str:
    """Content hash of a suite (order-independent)."""
    return sha256_json(sorted((s.to_dict() for s in scenarios), key=lambda d: d["id"]))

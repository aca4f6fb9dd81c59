"""The whole loop, iteration by iteration, as plain functions over a lake and Dagster's own
daemon: the fleet drives what the director assigns it (OTA) and uploads; the daemon's sensors
and automation conditions ingest, check, label, curate, version the dataset, train, gate and
release, and the loop waits until they come to rest; while the release rolls out, the fleet
drives again and the daemon takes the next rollout decision on its telemetry."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dataloop.daemon import Daemon, wait_quiet
from dataloop.fleet.simulator.config import SimConfig
from dataloop.lake.pointers import read_json
from dataloop.lake.store import ObjectStore

STOCK = "stock"
"""Rows of the gate's fixed scenarios (the same every iteration): the closed-loop score."""


@dataclass
class Iteration:
    index: int
    km: float = 0.0
    """Driven by the fleet in this iteration (first drive + rollout drives)."""
    disengagements: int = 0
    fleet_models: dict[str, float] = field(default_factory=dict)
    """km per model version the fleet ran in its first drive."""
    rollout_models: dict[str, float] = field(default_factory=dict)
    """... and in its drives during the rollout (cohorts on the new release)."""
    dataset: str | None = None
    dataset_clips: int = 0
    model: str | None = None
    """The model trained in this iteration (None: the trigger did not fire)."""
    score: float | None = None
    """Closed-loop score of that model on the gate's stock scenarios."""
    production_score: float | None = None
    """... and of the model it was gated against."""
    gate_passed: bool | None = None
    gate_reasons: list[str] = field(default_factory=list)
    releases: list[str] = field(default_factory=list)
    """Releases published in this iteration and their rollouts ("1: advance 50 %, ...")."""
    production: str = "baseline"
    runs: list[dict] = field(default_factory=list)

    @property
    def disengagements_per_1000km(self) -> float:
        return 1000 * self.disengagements / self.km if self.km else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "disengagements_per_1000km": self.disengagements_per_1000km}


@dataclass(frozen=True)
class LoopConfig:
    vehicles: int = 4
    minutes: float = 2.0
    """Each vehicle's first drive per iteration."""
    rollout_minutes: float = 1.0
    """Each vehicle's drive per rollout stage."""
    seed: int = 0
    fleet: SimConfig = field(default_factory=SimConfig)
    logs: Path = Path(".dataloop/fleet")


Progress = Callable[[str], None]


def _drive(
    store: ObjectStore, cfg: LoopConfig, minutes: float, seed: int, it: Iteration, models: dict
) -> None:
    from dataloop.fleet.simulator.fleet import simulate_fleet

    reports = simulate_fleet(
        vehicles=cfg.vehicles,
        minutes=minutes,
        seed=seed,
        out=cfg.logs,
        start=datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=minutes),
        config=cfg.fleet,
        lake=store.url,
    )
    for r in reports:
        it.km += r.km
        it.disengagements += r.disengagements
        models[r.model_version] = round(models.get(r.model_version, 0.0) + r.km, 3)


def _settle(daemon: Daemon, sensors: set[str], since: float, it: Iteration) -> None:
    """Wait for the daemon to finish what the drive since ``since`` started (it starts on the
    first uploads while the fleet still drives); its runs go on the iteration."""
    rest = wait_quiet(daemon, since, sensors=sensors, after=time.time())
    it.runs.extend(rest.runs)
    if rest.errors:
        raise RuntimeError("sensor errors:\n" + "\n".join(rest.errors))


def _stock_score(rows: list[dict], model: str) -> float | None:
    scores = [r["score"] for r in rows if r["model_version"] == model and r["source"] == STOCK]
    return sum(scores) / len(scores) if scores else None


def _record_outcome(
    store: ObjectStore, it: Iteration, models_before: str | None, releases_before: int
) -> None:
    """What this iteration's runs left in the lake: dataset, model, gate, release."""
    from dataloop.curation import datasets as D
    from dataloop.lake.layout import dataset_version_key
    from dataloop.policy.bundle import latest
    from dataloop.release import rollout as RO
    from dataloop.simulation.gate import gate_result

    pointer = D.latest_training_dataset(store)
    if pointer:
        name = D.training_dataset_name()
        it.dataset = f"{name}:{pointer['seq']}"
        version = read_json(store, dataset_version_key(name, pointer["seq"]))
        it.dataset_clips = version["clips"]
    model = (latest(store) or {}).get("version")
    if model and model != models_before:
        it.model = model
        gate = gate_result(store, rows=True)
        if gate is not None and gate["candidate"] == model:
            it.gate_passed = gate["passed"]
            it.gate_reasons = gate["reasons"]
            it.score = _stock_score(gate["results"], model)
            it.production_score = _stock_score(gate["results"], gate["production"])
    st = RO.state(store)
    for h in RO.history(store):
        if h["release"] <= releases_before:
            continue
        if h.get("kind") == "rollback":
            outcome = f"rollback to {h['model_version'][:8]}"
        elif h.get("rollout"):
            outcome = ", ".join(
                f"{d['decision']} {d['stage_percent']} %" for d in h["rollout"]["decisions"]
            )
        elif st is not None and st["release"] == h["release"]:
            outcome = f"rolling at {RO.load_policy()['stages'][st['stage']]} %"
        else:
            outcome = "published"
        it.releases.append(f"{h['release']}: {outcome}")
    it.production = RO.production_version(store)


def run_iteration(
    store: ObjectStore,
    cfg: LoopConfig,
    index: int,
    daemon: Daemon,
    sensors: set[str],
    say: Progress = lambda _: None,
) -> Iteration:
    """One turn of the loop (see the module docstring)."""
    from dataloop.policy.bundle import latest
    from dataloop.release.rollout import history, load_policy, rolling

    it = Iteration(index)
    before = (latest(store) or {}).get("version")
    releases_before = max((h["release"] for h in history(store)), default=0)
    say(f"fleet: {cfg.vehicles} vehicles drive {cfg.minutes:g} min and upload")
    since = time.time()
    _drive(store, cfg, cfg.minutes, cfg.seed * 1000 + index * 10, it, it.fleet_models)
    say("daemon: ingest, quality, labels, curation, dataset, training, gate, release")
    _settle(daemon, sensors, since, it)
    # Each rollout drive is one decision (wait, advance, complete or halt); a stage whose
    # cohort has not driven its km yet waits for the next drive. One release's rollout per
    # iteration (a candidate trained after it completes rolls out in the next iteration), and
    # bounded, so a fleet too small for its stages cannot loop forever.
    rolling_release = None
    for k in range(2 * len(load_policy()["stages"])):
        st = rolling(store)
        if st is None or rolling_release not in (None, st["release"]):
            break
        rolling_release = st["release"]
        say(f"rollout drive {k + 1}: the fleet drives {cfg.rollout_minutes:g} min over the air")
        seed = cfg.seed * 1000 + index * 10 + k + 1
        since = time.time()
        _drive(store, cfg, cfg.rollout_minutes, seed, it, it.rollout_models)
        say(f"daemon: rollout decision {k + 1} on the fleet's telemetry")
        _settle(daemon, sensors, since, it)
    _record_outcome(store, it, before, releases_before)
    return it


def ensure_keys(home: Path) -> None:
    """TUF keys for the demo's release step (``home/keys``), unless keys are configured."""
    from dataloop.release.repository import KEYS_ENV, init_keys

    if os.environ.get(KEYS_ENV) or os.environ.get("DATALOOP_TUF_KEY_TIMESTAMP"):
        return
    folder = home / "keys"
    init_keys(folder)
    os.environ[KEYS_ENV] = str(folder)

"""Run a suite for several policies on every core: one task per scenario runs the expert
(the progress reference) and each policy on the same seeded scenario, so scores are paired."""

from __future__ import annotations

import importlib
import os
from typing import Any

from dataloop.policy.observation import BASELINE, BaselineExpert, DrivingPolicy
from dataloop.processes import process_pool
from dataloop.simulation.episode import run_episode
from dataloop.simulation.scenario import Scenario
from dataloop.simulation.score import score, subscores

PolicySpec = str | DrivingPolicy
"""``baseline``, a model bundle version in the lake, ``py:module:attr`` (a class or factory
of a rule-based policy), or a picklable policy object."""


def resolve(spec: PolicySpec, lake: str | None = None) -> DrivingPolicy:
    if not isinstance(spec, str):
        return spec
    if spec.startswith("py:"):
        module, attr = spec[3:].split(":")
        return getattr(importlib.import_module(module), attr)()
    from dataloop.lake.store import open_store
    from dataloop.policy.bundle_policy import load_policy

    return load_policy(spec, open_store(lake) if lake else None)


def _scenario_task(args: tuple[dict, list[PolicySpec], str | None]) -> list[dict[str, Any]]:
    scenario_dict, specs, lake = args
    scenario = Scenario.from_dict(scenario_dict)
    expert = run_episode(scenario, BaselineExpert())
    rows = []
    for spec in specs:
        policy = resolve(spec, lake)
        ep = expert if policy.model_version == BASELINE else run_episode(scenario, policy)
        sub = subscores(ep, expert.distance_m)
        rows.append(
            {
                **ep.to_dict(),
                "source": scenario.source,
                "expert_distance_m": expert.distance_m,
                **sub,
                "score": score(sub),
            }
        )
    return rows


def run_suite(
    scenarios: list[Scenario],
    policies: list[PolicySpec],
    *,
    lake: str | None = None,
    workers: int | None = None,
    backend: str = "highway-env",
) -> list[dict[str, Any]]:
    """One row per (scenario, policy), in suite order. ``workers``: processes (default every
    core; 1 runs in this process). ``backend``: ``highway-env`` (every road, one episode per
    task) or ``batched`` (highway and merge, thousands of scenarios stepped together: #13,
    ``dataloop.simulation.batched``); the rows are the same either way."""
    if backend == "batched":
        from dataloop.simulation.batched.runner import run_suite as run_batched

        return run_batched(scenarios, policies, lake=lake, workers=workers)
    if backend != "highway-env":
        raise ValueError(f"unknown simulation backend {backend!r}")
    tasks = [(s.to_dict(), list(policies), lake) for s in scenarios]
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(tasks) == 1:
        results = [_scenario_task(t) for t in tasks]
    else:
        with process_pool(min(workers, len(tasks))) as pool:
            results = list(pool.map(_scenario_task, tasks))
    return [row for rows in results for row in rows]

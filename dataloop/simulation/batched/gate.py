"""The gate on both backends: highway-env drives the reference suite (stock scenarios of
every road, scenarios rebuilt from logs, their variations), the batched backend a large
stock suite of its roads (``suite.batched`` in ``assets/gates/release.yaml``), and every run
re-checks the batched backend against highway-env on the reference scenarios it can drive.

The rows of both suites go to ``gate.decide`` together: the batched scenarios have their
own seeds (so their own ids) and the road as category, so each road's paired Wilcoxon test
gets thousands of pairs instead of a handful. When the backends disagree on the reference
scenarios beyond ``suite.batched.agreement``, the gate fails: its large suite is then not
evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dataloop.simulation import gate as G
from dataloop.simulation.batched.roads import BATCHED_ROADS
from dataloop.simulation.batched.runner import run_suite as run_batched
from dataloop.simulation.runner import PolicySpec, run_suite
from dataloop.simulation.scenario import Scenario, stock

PROGRESS_TOLERANCE = 0.05
"""Progress agrees when the distances differ by at most 5 % (of at least 5 m)."""


def batched_suite(config: dict[str, Any] | None) -> list[Scenario]:
    """The large stock suite ``suite.batched`` describes: ``seeds`` seeds per road from
    ``first_seed`` (kept apart from the reference suite's, so scenario ids never clash)."""
    if not config or not int(config.get("seeds", 0)):
        return []
    roads = [r for r in config.get("roads", BATCHED_ROADS) if r in BATCHED_ROADS]
    first = int(config.get("first_seed", 1001))
    return stock(roads, list(range(first, first + int(config["seeds"]))), float(config["seconds"]))


def agreement(reference: list[dict], batched: list[dict]) -> dict[str, float]:
    """How well batched rows reproduce highway-env's on the same (scenario, policy) pairs:
    fraction with the same collision outcome, fraction with progress within
    ``PROGRESS_TOLERANCE``, Spearman rank correlation of the scores."""
    from scipy.stats import spearmanr

    batched_by_key = {(r["scenario_id"], r["model_version"]): r for r in batched}
    pairs = [(h, batched_by_key[k]) for h in reference if (k := _key(h)) in batched_by_key]
    if not pairs:
        return {"pairs": 0}
    h_scores = np.array([h["score"] for h, _ in pairs])
    b_scores = np.array([b["score"] for _, b in pairs])
    if np.ptp(h_scores) == 0 or np.ptp(b_scores) == 0:  # rank correlation undefined
        rho = 1.0 if np.allclose(h_scores, b_scores) else 0.0
    else:
        rho = float(spearmanr(h_scores, b_scores).statistic)
    return {
        "pairs": len(pairs),
        "collision_agreement": float(np.mean([h["collided"] == b["collided"] for h, b in pairs])),
        "progress_within_5pct": float(
            np.mean(
                [
                    abs(b["distance_m"] - h["distance_m"])
                    <= PROGRESS_TOLERANCE * max(abs(h["distance_m"]), 5.0)
                    for h, b in pairs
                ]
            )
        ),
        "score_rank_correlation": rho,
    }


def _key(row: dict) -> tuple[str, str]:
    return row["scenario_id"], row["model_version"]


@dataclass
class GateRun:
    """The rows of both suites (reference first), and the backends' agreement."""

    rows: list[dict]
    reference_scenarios: int
    batched_scenarios: int
    agreement: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    """Why the batched suite cannot be trusted on this run (empty when it can)."""

    def metadata(self) -> dict[str, Any]:
        return {
            "reference_scenarios": self.reference_scenarios,
            "batched_scenarios": self.batched_scenarios,
            "agreement": self.agreement,
            "agreement_reasons": self.reasons,
        }


def run_gate_suites(
    reference: list[Scenario],
    specs: list[PolicySpec],
    batched_config: dict[str, Any] | None,
    *,
    lake: str | None = None,
    workers: int | None = None,
) -> GateRun:
    """highway-env on ``reference``, the batched backend on ``suite.batched`` and on the
    reference scenarios of its roads (the agreement check)."""
    rows = run_suite(reference, specs, lake=lake, workers=workers)
    large = batched_suite(batched_config)
    if not large:
        return GateRun(rows, len(reference), 0)
    overlap = [s for s in reference if s.road in BATCHED_ROADS]
    check = run_batched(overlap, specs, lake=lake, workers=workers) if overlap else []
    measured = agreement([r for r in rows if r["scenario_id"] in {s.id for s in overlap}], check)
    limits = (batched_config or {}).get("agreement") or {}
    reasons = [
        f"batched backend disagrees with highway-env: {name} {measured.get(name, 0.0):.3f} < "
        f"{limit}"
        for name, limit in limits.items()
        if measured.get("pairs") and measured.get(name, 0.0) < float(limit)
    ]
    rows = rows + run_batched(large, specs, lake=lake, workers=workers)
    return GateRun(rows, len(reference), len(large), measured, reasons)


def decide(run: GateRun, candidate: str, production: str, gate: dict[str, Any]) -> G.Verdict:
    """``gate.decide`` on both suites' rows, failed also when the backends disagree."""
    verdict = G.decide(run.rows, candidate, production, gate)
    if run.reasons:
        verdict.passed = False
        verdict.reasons = verdict.reasons + run.reasons
    return verdict

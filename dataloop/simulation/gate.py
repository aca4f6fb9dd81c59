"""The release gate (``assets/gates/release.yaml``): absolute thresholds on the candidate,
and no regression against production per scenario category, judged by a one-sided Wilcoxon
signed-rank test on the paired per-scenario scores (same scenarios, same seeds); and the
gate's records in the lake, written and read here only."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dataloop import rules
from dataloop.lake import layout as L
from dataloop.lake.hashing import canonical_json, sha256_json
from dataloop.lake.pointers import read_json, write_json
from dataloop.lake.store import ObjectExists, ObjectStore
from dataloop.policy.observation import BASELINE
from dataloop.rules import rules_dir
from dataloop.rules import schemas as S


def gate_file() -> Path:
    """``gates/release.yaml`` in the rules folder (``$DATALOOP_RULES`` or assets/)."""
    return rules_dir() / "gates" / "release.yaml"


def load_gate(path: Path | None = None, data: bytes | None = None) -> dict[str, Any]:
    """The gate (or ``data``, its bytes), validated (``RulesError``: file, line)."""
    return rules.load(path or gate_file(), S.Gate, data)


def gate_version(gate: dict[str, Any]) -> str:
    return sha256_json(gate)[:16]


def regression_p_value(candidate: np.ndarray, production: np.ndarray) -> float:
    """P(candidate scores at least this much lower by chance): one-sided Wilcoxon signed-rank
    on the paired differences (zero differences dropped; 1.0 when all are zero)."""
    from scipy.stats import wilcoxon

    diff = candidate - production
    if not np.any(diff != 0):
        return 1.0
    return float(wilcoxon(diff, alternative="less", zero_method="wilcox").pvalue)


@dataclass
class Verdict:
    passed: bool
    reasons: list[str]
    categories: list[dict[str, Any]]
    candidate: dict[str, float]
    production: dict[str, float]

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=1, sort_keys=True)


def _summary(rows: list[dict]) -> dict[str, float]:
    n = max(len(rows), 1)
    return {
        "scenarios": len(rows),
        "mean_score": float(np.mean([r["score"] for r in rows])) if rows else 0.0,
        "at_fault_collision_rate": sum(r["at_fault"] for r in rows) / n,
        "offroad_rate": sum(r["offroad_steps"] > 0 for r in rows) / n,
    }


def decide(rows: list[dict], candidate: str, production: str, gate: dict[str, Any]) -> Verdict:
    """The gate's verdict from ``run_suite`` rows holding both models. Before the first
    release the production "model" is the expert driver the fleet is driven by: the per-
    category comparison with it is reported but does not gate (a first model is judged on the
    absolute thresholds; every later one must not regress against the model it replaces)."""
    cand = [r for r in rows if r["model_version"] == candidate]
    prod = {r["scenario_id"]: r for r in rows if r["model_version"] == production}
    absolute, regression = gate["absolute"], gate["regression"]
    reasons = []
    c_sum, p_sum = _summary(cand), _summary(list(prod.values()))
    if c_sum["mean_score"] < absolute["min_mean_score"]:
        reasons.append(f"mean score {c_sum['mean_score']:.3f} < {absolute['min_mean_score']}")
    rate = c_sum["at_fault_collision_rate"]
    if rate > absolute["max_at_fault_collision_rate"]:
        reasons.append(
            f"at-fault collision rate {rate:.3f} > {absolute['max_at_fault_collision_rate']}"
        )
    if c_sum["offroad_rate"] > absolute["max_offroad_rate"]:
        reasons.append(
            f"off-road rate {c_sum['offroad_rate']:.3f} > {absolute['max_offroad_rate']}"
        )
    categories = []
    for category in sorted({r["category"] for r in cand}):
        pairs = [
            (r["score"], prod[r["scenario_id"]]["score"]) for r in cand if r["category"] == category
        ]
        c = np.array([a for a, _ in pairs])
        p = np.array([b for _, b in pairs])
        p_value = regression_p_value(c, p)
        delta = float(c.mean() - p.mean())
        regressed = p_value < regression["alpha"] and delta < -regression["min_effect"]
        if regressed:
            verdict = "regression"
        elif 0.5 ** len(pairs) >= regression["alpha"]:
            verdict = "too few scenarios to test"  # the smallest one-sided p is 2^-n
        else:
            verdict = "better" if delta > 0 else "no regression"
        if regressed and production != BASELINE:
            reasons.append(f"{category}: {delta:+.3f} vs production (p={p_value:.4f})")
        categories.append(
            {
                "category": category,
                "scenarios": len(pairs),
                "candidate": float(c.mean()),
                "production": float(p.mean()),
                "delta": delta,
                "p_value": p_value,
                "verdict": verdict,
            }
        )
    return Verdict(not reasons, reasons, categories, c_sum, p_sum)


def record_result(store: ObjectStore, record: dict[str, Any]) -> str:
    """Store a gate run's record once at its results key (per-scenario ``results`` included)
    and replace the latest result (``GATE_RESULT_KEY``) with its summary; returns the key."""
    key = L.results_key(record["candidate"], record["production"], record["suite"], record["gate"])
    with contextlib.suppress(ObjectExists):  # the same run again: the same bytes
        store.put(key, canonical_json(record))
    summary = {k: v for k, v in record.items() if k != "results"}
    write_json(store, L.GATE_RESULT_KEY, {**summary, "results_key": key})
    return key


def gate_result(
    store: ObjectStore, key: str | None = None, *, rows: bool = False
) -> dict[str, Any] | None:
    """The one reader of a gate result: the latest one, or the one stored at ``key``; None
    when there is none. Its summary (candidate, production, suite, gate, passed, reasons,
    categories, summary, open_loop, backends) and ``results_key``; with ``rows`` also the
    per-scenario ``results``."""
    if key is None:
        latest = read_json(store, L.GATE_RESULT_KEY)
        if latest is None or not rows:
            return latest
        key = latest["results_key"]
    record = read_json(store, key)
    if record is None:
        return None
    if not rows:
        record.pop("results", None)
    return {**record, "results_key": key}

"""One run of the release gate, the stage's entry point (``simulation_report`` calls it):
build the suite for the lake as it is, run the candidate and production on both backends,
decide, evaluate open loop, and record the result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dataloop.lake.hashing import sha256_json
from dataloop.lake.store import ObjectStore
from dataloop.simulation import gate as G


class NoCandidate(LookupError):
    """Nothing to gate: no candidate given and no trained model in the lake."""


@dataclass(frozen=True)
class GateOptions:
    """Per-run overrides: another candidate (a bundle version, ``baseline`` or
    ``py:module:Class``), a smaller suite (smoke tests), fewer worker processes."""

    candidate: str | None = None
    roads: list[str] | None = None
    seeds: list[int] | None = None
    seconds: float | None = None
    max_clips: int | None = None
    batched_seeds: int | None = None
    """Seeds per road of the batched suite (0: none; default: ``suite.batched``; a run that
    overrides ``seeds`` runs none unless this says so)."""
    workers: int | None = None


@dataclass
class GateReport:
    """What a gate run recorded (``record``, at ``key``) and what its report shows."""

    record: dict[str, Any]
    key: str
    scenarios: int
    verdict: G.Verdict
    versions: tuple[str, str]
    """The model versions the rows name the candidate and production by (a ``py:`` spec
    resolves to its class's)."""

    @property
    def data_version(self) -> str:
        return sha256_json(self.record)[:32]


def _suite_config(gate: dict[str, Any], options: GateOptions) -> tuple[dict, dict, dict]:
    """The gate's stock, from-logs and batched suite settings with the run's overrides."""
    suite_cfg = gate["suite"]
    stock = {
        **suite_cfg["stock"],
        **{k: getattr(options, k) for k in ("roads", "seeds", "seconds") if getattr(options, k)},
    }
    logs = dict(suite_cfg.get("from_logs") or {})
    if options.max_clips is not None:
        logs["max_clips"] = options.max_clips
    batched = dict(suite_cfg.get("batched") or {})
    if options.batched_seeds is not None or options.seeds:
        batched["seeds"] = options.batched_seeds or 0
    return stock, logs, batched


def gate_candidate(
    store: ObjectStore, lake: str | None, options: GateOptions | None = None
) -> GateReport:
    """Gate the candidate (``options.candidate``, else the latest trained bundle) against
    the model in production and record the result (``gate.record_result``). ``lake`` is the
    lake's URL, for worker processes. Raises ``NoCandidate``, and ``RulesError`` for an
    invalid gate file."""
    from dataloop.policy.bundle import latest
    from dataloop.release.rollout import production_version
    from dataloop.simulation import suite as S
    from dataloop.simulation.batched import gate as BG
    from dataloop.simulation.open_loop import evaluate
    from dataloop.simulation.runner import resolve

    options = options or GateOptions()
    candidate = options.candidate or (latest(store) or {}).get("version")
    if not candidate:
        raise NoCandidate("no trained model in the lake")
    production = production_version(store)
    gate = G.load_gate()
    stock, logs, batched = _suite_config(gate, options)
    scenarios = S.build_suite(store, {"stock": stock, "from_logs": logs})
    suite = S.store_suite(store, scenarios)
    specs = list(dict.fromkeys([candidate, production]))
    run = BG.run_gate_suites(scenarios, specs, batched, lake=lake, workers=options.workers)
    policies = [resolve(spec, lake) for spec in (candidate, production)]
    versions = (policies[0].model_version, policies[1].model_version)
    verdict = BG.decide(run, *versions, gate)
    record = {
        "candidate": candidate,
        "production": production,
        "suite": suite,
        "gate": G.gate_version(gate),
        "passed": verdict.passed,
        "reasons": verdict.reasons,
        "categories": verdict.categories,
        "summary": {"candidate": verdict.candidate, "production": verdict.production},
        "open_loop": evaluate(store, policies, int(logs.get("max_clips", 0))),
        "backends": run.metadata(),
        "results": run.rows,
    }
    key = G.record_result(store, record)
    return GateReport(record, key, len(scenarios), verdict, versions)

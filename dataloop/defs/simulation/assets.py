"""Simulation: the release gate. Runs the scenario suite for the latest trained bundle
against the model in production; a blocking check stops the release when the gate fails."""

import dagster as dg

from dataloop.defs.resources import LakeResource
from dataloop.defs.rules import rules_failures
from dataloop.defs.training.assets import trained_model
from dataloop.lake.hashing import sha256_bytes, sha256_json
from dataloop.lake.layout import GATE_RESULT_KEY, results_key
from dataloop.lake.pointers import read_json, write_json


class SimulationRunConfig(dg.Config):
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


def _code_version() -> str:
    """The gate file's and the simulation code's hash; a marker while the gate is invalid."""
    from pathlib import Path

    from dataloop.rules import snapshot
    from dataloop.simulation.gate import gate_file, load_gate

    gate = snapshot(gate_file(), load_gate)
    if gate.error:
        return gate.version(str)
    sources = sorted((Path(__file__).parents[2] / "simulation").rglob("*.py"))
    raw = gate.files[gate_file()] or b""
    return "simulation-" + sha256_bytes(raw + b"".join(p.read_bytes() for p in sources))[:16]


@dg.asset(
    deps=[trained_model],
    group_name="simulation",
    code_version=_code_version(),
    kinds={"python"},
    tags={"dataloop/stage": "simulation"},
)
def simulation_report(
    context: dg.AssetExecutionContext, config: SimulationRunConfig, lake: LakeResource
) -> dg.MaterializeResult:
    """Closed-loop scores of the latest trained model and of production on the same suite
    (stock, rebuilt from held-out clips, variations), the per-category comparison and the
    gate's verdict. Per-scenario results are stored in the lake."""
    from dataloop.policy.bundle import latest
    from dataloop.simulation import gate as G
    from dataloop.simulation import report as R
    from dataloop.simulation import suite as S
    from dataloop.simulation.batched import gate as BG
    from dataloop.simulation.open_loop import evaluate
    from dataloop.simulation.runner import resolve

    store = lake.store()
    candidate = config.candidate or (latest(store) or {}).get("version")
    if not candidate:
        raise dg.Failure("no trained model yet: materialize trained_model first")
    production = G.production_version(store)
    with rules_failures():
        gate = G.load_gate()
    suite_cfg = gate["suite"]
    stock = {
        **suite_cfg["stock"],
        **{k: getattr(config, k) for k in ("roads", "seeds", "seconds") if getattr(config, k)},
    }
    logs = dict(suite_cfg.get("from_logs") or {})
    if config.max_clips is not None:
        logs["max_clips"] = config.max_clips
    scenarios = S.build_suite(store, {"stock": stock, "from_logs": logs})
    suite = S.store_suite(store, scenarios)
    specs = list(dict.fromkeys([candidate, production]))
    batched = dict(suite_cfg.get("batched") or {})
    if config.batched_seeds is not None or config.seeds:
        batched["seeds"] = config.batched_seeds or 0
    run = BG.run_gate_suites(scenarios, specs, batched, lake=lake.url, workers=config.workers)
    rows = run.rows
    # Rows name each policy by its model version (a py: spec resolves to its class's).
    policies = [resolve(spec, lake.url) for spec in (candidate, production)]
    versions = [p.model_version for p in policies]
    verdict = BG.decide(run, *versions, gate)
    open_loop = evaluate(store, policies, int(logs.get("max_clips", 0)))
    record = {
        "candidate": candidate,
        "production": production,
        "suite": suite,
        "gate": G.gate_version(gate),
        "passed": verdict.passed,
        "reasons": verdict.reasons,
        "categories": verdict.categories,
        "summary": {"candidate": verdict.candidate, "production": verdict.production},
        "open_loop": open_loop,
        "backends": run.metadata(),
        "results": rows,
    }
    key = results_key(candidate, production, suite, G.gate_version(gate))
    S.put_once(store, key, record)
    summary = {k: v for k, v in record.items() if k != "results"}
    write_json(store, GATE_RESULT_KEY, {**summary, "results_key": key})
    context.log.info(f"gate {'passed' if verdict.passed else 'FAILED'}: {verdict.reasons}")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(sha256_json(record)[:32]),
        metadata={
            "candidate": dg.MetadataValue.text(candidate),
            "production": dg.MetadataValue.text(production),
            "suite_version": dg.MetadataValue.text(suite),
            "scenarios": dg.MetadataValue.int(len(scenarios)),
            "results_key": dg.MetadataValue.text(key),
            "gate_passed": dg.MetadataValue.bool(verdict.passed),
            "open_loop": dg.MetadataValue.json(open_loop),
            "backends": dg.MetadataValue.json(run.metadata()),
            "candidate_mean_score": dg.MetadataValue.float(verdict.candidate["mean_score"]),
            "production_mean_score": dg.MetadataValue.float(verdict.production["mean_score"]),
            "categories": dg.MetadataValue.md(R.category_table(verdict, *versions)),
            "score_distributions": dg.MetadataValue.md(R.score_plot(rows, *versions)),
        },
    )


@dg.asset_check(
    asset=simulation_report,
    blocking=True,
    description="The candidate passes the release gate (assets/gates/release.yaml): absolute "
    "thresholds and no significant regression against production in any category. A failure "
    "stops everything downstream of the report (the release).",
)
def gate_passed(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    event = context.instance.get_latest_materialization_event(simulation_report.key)
    materialization = event.asset_materialization if event else None
    key = materialization.metadata.get("results_key") if materialization else None
    record = (read_json(lake.store(), key.value) if key else None) or {
        "passed": False,
        "reasons": ["no gate result recorded"],
    }
    return dg.AssetCheckResult(
        passed=bool(record["passed"]),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "reasons": dg.MetadataValue.json(record.get("reasons", [])),
            "candidate": dg.MetadataValue.text(str(record.get("candidate"))),
            "production": dg.MetadataValue.text(str(record.get("production"))),
        },
    )

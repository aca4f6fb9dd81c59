"""Simulation: the release gate. Runs the scenario suite for the latest trained bundle
against the model in production; a blocking check stops the release when the gate fails."""

from dataclasses import fields
from typing import TYPE_CHECKING, get_type_hints

import dagster as dg
import pydantic

from dataloop.defs.resources import LakeResource
from dataloop.defs.rules import rules_failures
from dataloop.defs.training.assets import trained_model
from dataloop.lake.hashing import sha256_bytes
from dataloop.simulation.gate import gate_result
from dataloop.simulation.gate_run import GateOptions

if TYPE_CHECKING:
    from dataloop.simulation.gate_run import GateReport


def _run_config(options: type[GateOptions]) -> type[dg.Config]:
    """The gate's per-run overrides as Dagster run config: the fields of ``GateOptions``
    (declared there once), with their types and defaults."""
    hints = get_type_hints(options)
    return pydantic.create_model(
        "SimulationRunConfig",
        __base__=dg.Config,
        __doc__=options.__doc__,
        __module__=__name__,
        **{f.name: (hints[f.name], f.default) for f in fields(options)},
    )


SimulationRunConfig = _run_config(GateOptions)


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


def _metadata(gated: "GateReport") -> dict[str, dg.MetadataValue]:
    """The report's metadata: the verdict, its scores per category and their distributions."""
    from dataloop.simulation import report as R

    record, verdict, versions = gated.record, gated.verdict, gated.versions
    return {
        "candidate": dg.MetadataValue.text(record["candidate"]),
        "production": dg.MetadataValue.text(record["production"]),
        "suite_version": dg.MetadataValue.text(record["suite"]),
        "scenarios": dg.MetadataValue.int(gated.scenarios),
        "results_key": dg.MetadataValue.text(gated.key),
        "gate_passed": dg.MetadataValue.bool(verdict.passed),
        "open_loop": dg.MetadataValue.json(record["open_loop"]),
        "backends": dg.MetadataValue.json(record["backends"]),
        "candidate_mean_score": dg.MetadataValue.float(verdict.candidate["mean_score"]),
        "production_mean_score": dg.MetadataValue.float(verdict.production["mean_score"]),
        "categories": dg.MetadataValue.md(R.category_table(verdict, *versions)),
        "score_distributions": dg.MetadataValue.md(R.score_plot(record["results"], *versions)),
    }


@dg.asset(
    deps=[trained_model],
    group_name="simulation",
    code_version=_code_version(),
    kinds={"python"},
    tags={"dataloop/stage": "simulation"},
    # A new model is gated in the run that trains it (training_automation requests both),
    # or on the next evaluation after a model trained otherwise.
    automation_condition=dg.AutomationCondition.eager(),
)
def simulation_report(
    context: dg.AssetExecutionContext, config: SimulationRunConfig, lake: LakeResource
) -> dg.MaterializeResult:
    """Closed-loop scores of the latest trained model and of production on the same suite
    (stock, rebuilt from held-out clips, variations), the per-category comparison and the
    gate's verdict. Per-scenario results are stored in the lake."""
    from dataloop.simulation.gate_run import NoCandidate, gate_candidate

    try:
        with rules_failures():
            gated = gate_candidate(lake.store(), lake.url, GateOptions(**config.model_dump()))
    except NoCandidate:
        raise dg.Failure("no trained model yet: materialize trained_model first") from None
    verdict = gated.verdict
    context.log.info(f"gate {'passed' if verdict.passed else 'FAILED'}: {verdict.reasons}")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(gated.data_version), metadata=_metadata(gated)
    )


@dg.asset_check(
    asset=simulation_report,
    blocking=True,
    description="The candidate passes the release gate (assets/gates/release.yaml): absolute "
    "thresholds and no significant regression against production in any category. A failure "
    "stops everything downstream of the report (the release).",
)
def gate_passed(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    # The result of the materialization checked (its results_key), not the latest pointer
    # that the release reads: a later gate run may have replaced that one already.
    event = context.instance.get_latest_materialization_event(simulation_report.key)
    materialization = event.asset_materialization if event else None
    key = materialization.metadata.get("results_key") if materialization else None
    record = (gate_result(lake.store(), key.value) if key else None) or {
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

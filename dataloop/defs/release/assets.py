"""Release: sign the gated model into the TUF repository in the lake and drive its staged
rollout from fleet telemetry. Downstream of ``simulation_report``, so the blocking
``gate_passed`` check stops a failed candidate before it is ever signed."""

from datetime import timedelta

import dagster as dg

from dataloop.defs.resources import LakeResource
from dataloop.defs.rules import rules_failures
from dataloop.defs.simulation.assets import simulation_report
from dataloop.lake.hashing import sha256_json
from dataloop.simulation.gate import gate_result

TIMESTAMP_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=24), warn_window=timedelta(hours=19)
)
"""Every run re-signs the TUF timestamp, which expires in a day (``repository.EXPIRY``; a test
pins the two together); release_rollout runs the step within 6 h of the expiry, so a release
older than 19 h means that sensor is not running, and one older than 24 h that vehicles
refuse the repository's metadata."""


def _decision_table(decisions: list[dict]) -> str:
    lines = [
        "| release | stage % | decision | cohort km | cohort dis./1000 km | limit | "
        "prev. dis./1000 km | cohort err./1000 km | reasons |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for d in decisions:
        c, p = d["cohort"], d["previous_release"]
        lines.append(
            f"| {d['release']} | {d['stage_percent']} | {d['decision']} | {c['km']} | "
            f"{c['disengagements_per_1000km']} | {d['disengagement_limit_per_1000km']} | "
            f"{p['disengagements_per_1000km']} | {c['errors_per_1000km']} | "
            f"{'; '.join(d['reasons'])} |"
        )
    return "\n".join(lines)


@dg.asset(
    deps=[simulation_report],
    group_name="release",
    kinds={"python"},
    tags={"dataloop/stage": "release"},
    freshness_policy=TIMESTAMP_FRESHNESS,
)
def release(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """The OTA release: publishes a gated candidate (signed TUF targets: bundle + release
    notes) and starts its staged rollout (assets/release/rollout.yaml); every materialization
    re-signs the timestamp (online key) and takes one rollout decision from fleet telemetry
    (advance, halt + rollback release, or complete → production). Each vehicle's assignment
    is published as signed TUF metadata (a delegated role per cohort), re-signed whenever it
    changes or nears its expiry; the car reads it through its TUF client."""
    from dataloop.release import rollout as RO
    from dataloop.release.repository import KeysMissing, Repository, load_signers

    with rules_failures():  # the rollout policy: a broken file fails here, before signing
        RO.load_policy()
    store = lake.store()
    try:
        repo = Repository(store, load_signers())
    except KeysMissing as err:
        raise dg.Failure(str(err)) from None
    repo.init()
    gate = gate_result(store)
    candidate = RO.unreleased_candidate(store, gate)
    running = RO.rolling(store)
    started = None
    if candidate is not None:
        if running is not None:
            context.log.info(f"release {running['release']} still rolling; {candidate} waits")
        else:
            notes = RO.release_notes(store, candidate, gate)
            started = RO.start_rollout(store, repo, candidate, notes)
            context.log.info(f"release {started['release']}: {candidate} at stage 1")
    repo.refresh_timestamp()
    decision = RO.evaluate(store, repo)
    RO.publish_assignments(store, repo)  # the first run, expiring ones, after a crashed run
    cohorts: dict[str, int] = {}
    for a in RO.assignments(store).values():
        cohorts[str(a["release"])] = cohorts.get(str(a["release"]), 0) + 1
    status = RO.status(store)
    rollout = status["rollout"] or {}
    if decision:
        context.log.info(f"rollout decision: {decision['decision']}: {decision['reasons']}")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(sha256_json({**status, "at": None})[:32]),
        metadata={
            "production": dg.MetadataValue.json(status["production"]),
            "release": dg.MetadataValue.int(int(rollout.get("release") or 0)),
            "model_version": dg.MetadataValue.text(str(rollout.get("model_version"))),
            "status": dg.MetadataValue.text(str(rollout.get("status"))),
            "stage_percent": dg.MetadataValue.int(int(rollout.get("stage_percent") or 0)),
            "started_release": dg.MetadataValue.bool(started is not None),
            "cohorts_per_release": dg.MetadataValue.json(cohorts),
            "decision": dg.MetadataValue.json(decision or {}),
            "decisions": dg.MetadataValue.md(_decision_table(rollout.get("decisions", []))),
        },
    )

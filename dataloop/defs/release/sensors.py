"""When to run the release step: a passed gate with an unreleased candidate, new fleet
telemetry while a rollout is running, or a timestamp that expires within 6 hours (the online
key re-signs it on every run, so vehicles never see a stale one)."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from dataloop.defs.intervals import sensor_interval
from dataloop.defs.release.assets import release
from dataloop.defs.resources import LakeResource
from dataloop.lake.hashing import sha256_json
from dataloop.lake.layout import TELEMETRY_REPORTS
from dataloop.simulation.gate import gate_result

release_job = dg.define_asset_job(
    "release_job",
    selection=dg.AssetSelection.assets(release),
    tags={"dataloop/stage": "release"},
    executor_def=dg.in_process_executor,
    description="Publish a gated candidate and take one staged-rollout decision.",
)


def _reason(store) -> tuple[str, str] | None:
    from dataloop.release import rollout as RO
    from dataloop.release.repository import Repository

    st = RO.rolling(store)
    candidate = RO.unreleased_candidate(store, gate_result(store))
    if candidate is not None and st is None:
        return f"new:{candidate}", f"gate passed for {candidate}"
    if st is not None:
        keys = [i.key for i in store.list(TELEMETRY_REPORTS)]
        fingerprint = sha256_json([st["release"], st["stage"], keys])[:16]
        return f"rollout:{st['release']}:{fingerprint}", f"telemetry for release {st['release']}"
    ts = Repository(store, {}).latest("timestamp")
    if ts is not None and ts.signed.expires < datetime.now(UTC) + timedelta(hours=6):
        return f"timestamp:{ts.signed.version}", "timestamp expires within 6 h"
    return None


@dg.sensor(
    job=release_job,
    minimum_interval_seconds=sensor_interval(300),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Runs the release step when the gate passed a new candidate, when a running "
    "rollout has new fleet telemetry, or when the TUF timestamp is about to expire.",
)
def release_rollout(context: dg.SensorEvaluationContext, lake: LakeResource):
    found = _reason(lake.store())
    if found is None:
        return dg.SkipReason("no new candidate, no rollout running, timestamp fresh")
    key, why = found
    return dg.RunRequest(run_key=f"release:{key}", tags={"dataloop/release-reason": why[:250]})

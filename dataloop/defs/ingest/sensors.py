"""The upload sensor: new manifests -> one run per arrival hour."""

import os

import dagster as dg

from dataloop.defs.ingest.assets import ingest_job
from dataloop.defs.intervals import sensor_interval
from dataloop.defs.resources import LakeResource
from dataloop.ingest.discovery import ArrivalCursor, find_new_manifests, plan_hour_runs


@dg.sensor(
    job=ingest_job,
    minimum_interval_seconds=sensor_interval(30),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Lists the recent upload days of raw/ (never the whole bucket) and requests "
    "the arrival-hour partition of every new committed manifest. Run keys dedupe.",
)
def raw_upload_sensor(context: dg.SensorEvaluationContext, lake: LakeResource) -> dg.SensorResult:
    late_days = int(os.environ.get("DATALOOP_INGEST_LATE_DAYS", "1"))
    cursor = ArrivalCursor.from_json(context.cursor)
    new, next_cursor = find_new_manifests(lake.store(), cursor, late_days=late_days)
    runs = plan_hour_runs(new)
    for run in runs:
        context.log.info(f"hour {run.hour}: {len(run.manifests)} new manifest(s)")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                partition_key=run.hour,
                run_key=run.run_key,
                tags={"dataloop/new_manifests": str(len(run.manifests))},
            )
            for run in runs
        ],
        cursor=next_cursor.to_json(),
    )

"""The upload sensor: new manifests -> one run per arrival hour, found by listing the recent
upload days or, with ``DATALOOP_UPLOAD_QUEUE`` set, from bucket notifications."""

import os

import dagster as dg

from dataloop.defs.ingest.assets import ingest_job
from dataloop.defs.intervals import sensor_interval
from dataloop.defs.resources import LakeResource
from dataloop.ingest.discovery import ArrivalCursor, HourRun, find_new_manifests, plan_hour_runs
from dataloop.ingest.queue_tick import QueueCursor, drain_queue
from dataloop.ingest.upload_queues import MAX_MESSAGES, open_queue


def _late_days() -> int:
    return int(os.environ.get("DATALOOP_INGEST_LATE_DAYS", "1"))


def _from_listing(
    context: dg.SensorEvaluationContext, lake: LakeResource
) -> tuple[list[HourRun], str]:
    cursor = ArrivalCursor.from_json(context.cursor)
    new, next_cursor = find_new_manifests(lake.store(), cursor, late_days=_late_days())
    return plan_hour_runs(new), next_cursor.to_json()


def _from_queue(
    context: dg.SensorEvaluationContext, lake: LakeResource, spec: str
) -> tuple[list[HourRun], str]:
    tick = drain_queue(
        lake.store(),
        open_queue(spec),
        QueueCursor.from_json(context.cursor),
        late_days=_late_days(),
        max_messages=int(os.environ.get("DATALOOP_QUEUE_MAX_MESSAGES", MAX_MESSAGES)),
    )
    context.log.info(
        f"queue: {tick.received} message(s) received, {tick.acknowledged} acknowledged "
        f"({tick.ack_expired} expired), {tick.redelivered} redelivered manifest(s) dropped"
        + (f", reconciling listing found {tick.reconciled}" if tick.reconciled is not None else "")
    )
    for body, reason in tick.dead:
        context.log.error(f"dead-lettered a message ({reason}): {body[:200]!r}")
    return plan_hour_runs(tick.manifests), tick.cursor.to_json()


@dg.sensor(
    job=ingest_job,
    minimum_interval_seconds=sensor_interval(30),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests the arrival-hour partition of every new committed manifest: found "
    "by listing the recent upload days of raw/ (never the whole bucket) or, with "
    "DATALOOP_UPLOAD_QUEUE set, from the bucket's notifications (reconciled by a daily "
    "listing). Run keys dedupe.",
)
def raw_upload_sensor(context: dg.SensorEvaluationContext, lake: LakeResource) -> dg.SensorResult:
    spec = os.environ.get("DATALOOP_UPLOAD_QUEUE", "").strip()
    runs, cursor = _from_queue(context, lake, spec) if spec else _from_listing(context, lake)
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
        cursor=cursor,
    )

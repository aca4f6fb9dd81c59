"""When to train: the trigger policy as a sensor (lake state, one run key per dataset version
and reasons) and a schedule; every run is tagged with why it started."""

import dagster as dg

from dataloop.defs.intervals import sensor_interval
from dataloop.defs.resources import LakeResource
from dataloop.defs.training.assets import trained_model
from dataloop.infra.executors import stage_executor
from dataloop.release.rollout import rolling
from dataloop.rules import snapshot
from dataloop.training.config import TRIGGER_TAG, trigger_file, trigger_policy
from dataloop.training.trigger import decide

TRIGGER = snapshot(trigger_file(), trigger_policy)
"""The trigger policy as this code location read it (validated on first use: a broken file
fails the sensor's and the schedule's ticks, shown in the UI, not the code location)."""
FALLBACK_CRON = "0 3 * * 1"
"""The schedule's cron while trigger.yaml does not validate (its ticks fail with the error)."""

training_job = dg.define_asset_job(
    "training_job",
    # The new model is gated in the same run: simulation_report and its blocking check.
    selection=dg.AssetSelection.assets(trained_model, "simulation_report"),
    tags={"dataloop/stage": "training"},
    executor_def=stage_executor(),
    description="Train the driving model on the latest dataset version, then run the "
    "simulation gate on it (a failed gate fails the run and nothing is released).",
)


def _training_schedule() -> dg.ScheduleDefinition:
    description = "Retrain on the trigger policy's schedule (assets/training/trigger.yaml)."
    if TRIGGER.error is None:
        schedule = TRIGGER.get()["schedule"]
        return dg.ScheduleDefinition(
            name="training_schedule",
            job=training_job,
            cron_schedule=schedule["cron"],
            execution_timezone=schedule.get("timezone", "UTC"),
            tags={TRIGGER_TAG: f"schedule: {schedule['cron']}"},
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description=description,
        )

    @dg.schedule(
        name="training_schedule",
        job=training_job,
        cron_schedule=FALLBACK_CRON,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=description,
    )
    def invalid_trigger_policy(context: dg.ScheduleEvaluationContext):
        TRIGGER.get()  # raises the file:line error: the tick fails with it

    return invalid_trigger_policy


training_schedule = _training_schedule()


@dg.sensor(
    job=training_job,
    minimum_interval_seconds=sensor_interval(300),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Trains when a new dataset version adds enough clips over the current model's "
    "dataset, or a scenario category grows enough (assets/training/trigger.yaml).",
)
def training_trigger(context: dg.SensorEvaluationContext, lake: LakeResource):
    policy = TRIGGER.get()  # a broken trigger.yaml fails the tick with its file:line error
    store = lake.store()
    if policy.get("hold_during_rollout", True) and rolling(store):
        return dg.SkipReason("a release is rolling out: training waits for its outcome")
    pointer, reasons = decide(store, policy)
    if not reasons:
        return dg.SkipReason("the trigger policy does not ask for training")
    kinds = "+".join(r.split(":", 1)[0] for r in reasons)
    return dg.RunRequest(
        run_key=f"train:{pointer['version']}:{kinds}",
        tags={TRIGGER_TAG: "; ".join(reasons)[:250], "dataloop/dataset": pointer["version"]},
    )

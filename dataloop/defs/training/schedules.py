"""The training job (the model and its gate in one run) and the schedule that retrains on
the trigger policy's cron; the policy's own decision is ``training_automation``'s condition."""

import dagster as dg

from dataloop.defs.training.assets import trained_model
from dataloop.defs.training.automation import TRIGGER
from dataloop.infra.executors import stage_executor
from dataloop.training.config import TRIGGER_TAG

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

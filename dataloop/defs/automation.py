"""The stages' automation sensors, built one way: where a trigger reacts to upstream
materializations, the stage's assets carry ``AutomationCondition``s and one sensor per stage
evaluates them (each evaluation shows on the asset's Automation tab)."""

from __future__ import annotations

import warnings

import dagster as dg

from dataloop.defs.intervals import sensor_interval


def stage_automation(
    stage: str, assets: list[str], description: str
) -> dg.AutomationConditionSensorDefinition:
    """``<stage>_automation``: evaluates the conditions of ``assets`` in the code server (so
    custom condition classes work under dagster-daemon), running by default, every
    ``sensor_interval(30)`` s; one run per partition (never a backfill), tagged with the stage
    as its jobs are."""
    with warnings.catch_warnings():  # use_user_code_server is beta in dagster 1.13: chosen
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.AutomationConditionSensorDefinition(
            f"{stage}_automation",
            target=dg.AssetSelection.assets(*assets),
            run_tags={"dataloop/stage": stage},
            default_status=dg.DefaultSensorStatus.RUNNING,
            minimum_interval_seconds=sensor_interval(30),
            use_user_code_server=True,
            emit_backfills=False,
            description=description,
        )

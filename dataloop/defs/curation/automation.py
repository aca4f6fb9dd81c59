"""When to curate, as automation conditions the UI shows with every evaluation: a recent
arrival day is mined again (scenario index, then search index, one run per day) when its
compliant drives or their labels were updated; the training dataset is rebuilt when a day's
scenario index was; ``curation_automation`` evaluates them."""

from __future__ import annotations

import os
from datetime import timedelta

import dagster as dg

from dataloop.defs.automation import stage_automation

LOOKBACK_ENV = "DATALOOP_CURATION_LOOKBACK_DAYS"
AC = dg.AutomationCondition


def lookback_days() -> int:
    """How many recent arrival days are re-mined on an update (``$DATALOOP_CURATION_LOOKBACK_DAYS``,
    default 2: today and yesterday); read when the code location loads."""
    value = os.environ.get(LOOKBACK_ENV, "").strip() or "2"
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{LOOKBACK_ENV}={value!r}: a whole number of days, at least 1")
    return int(value)


def recent_day_updated(days: int) -> dg.AutomationCondition:
    """A day among the last ``days`` whose upstream (any of its hours) updated since the day
    was last requested or materialized, with none of them, and not the day, in progress.
    Not ``eager()``: its ``~any_deps_missing`` never passes, as a day's 24 hourly upstream
    partitions are never all there."""
    return (
        AC.in_latest_time_window(timedelta(days=days))
        & AC.any_deps_updated().since_last_handled()
        & ~AC.any_deps_in_progress()
        & ~AC.in_progress()
    )


dataset_inputs_updated = (
    (AC.any_deps_match(AC.newly_updated()) | AC.code_version_changed()).since_last_handled()
    # not while a day is mined, nor on the tick that requests one: the dataset waits for it
    & ~AC.any_deps_in_progress()
    & ~AC.any_deps_match(AC.will_be_requested())
    & ~AC.in_progress()
)
"""``training_dataset``'s condition: a scenario index partition (or the dataset's code
version: the curation policy) changed since the dataset was last requested or built."""

curation_automation = stage_automation(
    "curation",
    # the day's two assets are requested together: one run per day, as curation_job runs it
    ["scenario_index", "clip_embeddings", "training_dataset"],
    "Re-mines a recent arrival day when its compliant drives or their labels change; rebuilds "
    "the training dataset when the scenario index changes.",
)

"""The curation sensor: a day's index is mined again when its drives change; the dataset is
rebuilt when the scenario index changes. Both decide from the lake, so run keys dedupe."""

import os
from datetime import UTC, datetime, timedelta

import dagster as dg

from dataloop.curation.scenarios import day_state, index_days
from dataloop.defs.curation.assets import (
    POLICY_VERSION,
    clip_embeddings,
    scenario_index,
    training_dataset,
)
from dataloop.defs.curation.partitions import arrival_days
from dataloop.defs.intervals import sensor_interval
from dataloop.defs.resources import LakeResource
from dataloop.infra.executors import stage_executor
from dataloop.lake.hashing import sha256_json
from dataloop.lake.layout import day_index_key
from dataloop.lake.pointers import read_json

curation_job = dg.define_asset_job(
    "curation_job",
    selection=dg.AssetSelection.assets(scenario_index, clip_embeddings),
    partitions_def=arrival_days,
    tags={"dataloop/stage": "curation"},
    executor_def=stage_executor(),
    description="Mine one arrival day's drives for scenarios and index them for search.",
)
dataset_job = dg.define_asset_job(
    "dataset_job",
    selection=dg.AssetSelection.assets(training_dataset),
    tags={"dataloop/stage": "curation"},
    executor_def=dg.in_process_executor,
    description="Build the next version of the training dataset.",
)


@dg.sensor(
    jobs=[curation_job, dataset_job],
    minimum_interval_seconds=sensor_interval(60),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Re-mines a recent arrival day when its compliant drives or their labels "
    "change; rebuilds the training dataset when the scenario index changes.",
)
def curation_sensor(context: dg.SensorEvaluationContext, lake: LakeResource) -> dg.SensorResult:
    store = lake.store()
    lookback = int(os.environ.get("DATALOOP_CURATION_LOOKBACK_DAYS", "2"))
    today = datetime.now(UTC).date()
    requests = []
    for back in range(lookback):
        day = (today - timedelta(days=back)).isoformat()
        state = day_state(store, day)
        if state is None:
            continue
        mined = read_json(store, day_index_key(day))
        if mined and mined.get("state") == state:
            continue
        requests.append(
            dg.RunRequest(job_name=curation_job.name, partition_key=day, run_key=f"{day}:{state}")
        )
    pointers = [read_json(store, day_index_key(d)) for d in index_days(store)]
    inputs = sha256_json([[p["day"], p["clips_key"]] for p in pointers if p] + [POLICY_VERSION])
    if pointers and not requests:  # a day being re-mined changes the inputs: wait for it
        requests.append(dg.RunRequest(job_name=dataset_job.name, run_key=f"dataset:{inputs[:32]}"))
    return dg.SensorResult(run_requests=requests)

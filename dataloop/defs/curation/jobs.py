"""Curation's jobs, for backfills and the launchpad (``curation_automation`` requests the
same assets by their conditions): one arrival day's mining, and the training dataset."""

import dagster as dg

from dataloop.defs.curation.assets import clip_embeddings, scenario_index, training_dataset
from dataloop.defs.curation.partitions import arrival_days
from dataloop.infra.executors import stage_executor

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

"""Training: the driving model, trained outside the code location through Dagster Pipes."""

import sys

import dagster as dg

from dataloop.curation import datasets as D
from dataloop.defs.curation.assets import training_dataset
from dataloop.defs.resources import LakeResource
from dataloop.defs.rules import rules_failures, rules_or_fail
from dataloop.defs.training.automation import TRIGGER, trains_on_policy
from dataloop.rules import Snapshot
from dataloop.training.config import (
    TRIGGER_TAG,
    code_version,
    model_config,
    model_file,
    rules_version,
    trigger_file,
    trigger_policy,
)
from dataloop.training.trigger import training_decision

_MODEL, _TRIGGER = model_file(), trigger_file()
TRAINING_RULES = Snapshot(
    [_MODEL, _TRIGGER],
    lambda f: (model_config(_MODEL, f[_MODEL]), trigger_policy(_TRIGGER, f[_TRIGGER])),
)
"""assets/training/*.yaml as this code location read them: part of the model's code version."""


class TrainingRunConfig(dg.Config):
    """Per-run overrides of assets/training/model.yaml (e.g. fewer epochs for a smoke test)."""

    epochs: int | None = None


@dg.asset(
    deps=[training_dataset],
    group_name="training",
    # Editing assets/training/*.yaml or the training code marks the model stale.
    code_version=TRAINING_RULES.version(
        lambda rules: f"training-{code_version()}.rules-{rules_version(*rules)}"
    ),
    kinds={"pytorch"},
    tags={"dataloop/stage": "training"},
    automation_condition=trains_on_policy,
)
def trained_model(
    context: dg.AssetExecutionContext,
    config: TrainingRunConfig,
    lake: LakeResource,
    pipes_subprocess_client: dg.PipesSubprocessClient,
) -> dg.MaterializeResult:
    """The driving model trained on the latest dataset version, in a separate process
    (``python -m dataloop.training.train``) that reports epochs, losses and metrics over
    Pipes and writes the model bundle to the lake. The data version is the bundle hash."""
    store = lake.store()
    with rules_failures():
        model = model_config()
        pointer = D.latest_training_dataset(store)
    if pointer is None:
        raise dg.Failure("no training dataset yet: materialize training_dataset first")
    if config.epochs is not None:
        model["epochs"] = config.epochs
    # A scheduled run names its cron; otherwise what the trigger policy says now (the
    # automation condition's reasons, before this run trains on the dataset), else manual.
    trigger = context.run.tags.get(TRIGGER_TAG) or (
        "; ".join(training_decision(store, rules_or_fail(TRIGGER)).reasons) or "manual"
    )
    invocation = pipes_subprocess_client.run(
        command=[sys.executable, "-m", "dataloop.training.train"],
        context=context,
        extras={
            "lake": lake.url,
            "dataset_version": pointer["version"],
            "config": model,
            "trigger": trigger,
            "run_id": context.run.run_id,
        },
    )
    result = invocation.get_materialize_result()
    epochs = invocation.get_custom_messages()
    return dg.MaterializeResult(
        data_version=result.data_version,
        metadata={
            **(result.metadata or {}),
            "trigger": dg.MetadataValue.text(trigger),
            "epochs_reported": dg.MetadataValue.int(len(epochs)),
        },
    )

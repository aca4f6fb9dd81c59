"""When to train, as automation conditions the UI shows with every evaluation: the trigger
policy's decision (assets/training/trigger.yaml, ``dataloop.training.trigger``) on
``trained_model``, the simulation gate right after it; ``training_automation`` evaluates them."""

from __future__ import annotations

import dagster as dg

from dataloop.defs.automation import stage_automation
from dataloop.defs.resources import lake_store
from dataloop.rules import snapshot
from dataloop.training.config import trigger_file, trigger_policy
from dataloop.training.trigger import training_decision

TRIGGER = snapshot(trigger_file(), trigger_policy)
"""The trigger policy as this code location read it (validated on first use: a broken file
fails the automation sensor's and the schedule's ticks, shown in the UI, not the location)."""


class TrainingPolicy(dg.AutomationCondition):
    """True when the trigger policy asks to train on the latest dataset version, once per
    (dataset version, kinds of reasons), as the old sensor's run key was; held during a
    rollout. Its description is the latest decision, which each evaluation in the UI shows:
    the reasons, or why not."""

    def __init__(self) -> None:
        self._decision: str | None = None

    @property
    def name(self) -> str:
        return "training_policy"

    @property
    def description(self) -> str:
        return self._decision or "the trigger policy (assets/training/trigger.yaml) asks to train"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        if context.candidate_subset.is_empty:  # a run in progress: decide once it is not
            self._decision = "not asked: the model or its dataset is being built"
            return dg.AutomationResult(
                context=context, true_subset=context.get_empty_subset(), cursor=context.cursor
            )
        decision = training_decision(lake_store(), TRIGGER.get())
        key = None
        if decision.train:
            kinds = "+".join(r.split(":", 1)[0] for r in decision.reasons)
            key = f"{decision.pointer['version']}:{kinds}"
        fire = key is not None and key != context.cursor
        said = decision.summary()
        self._decision = said if fire or key is None else f"already requested: {said}"
        return dg.AutomationResult(
            context=context,
            true_subset=context.candidate_subset if fire else context.get_empty_subset(),
            cursor=key or context.cursor,
        )


trains_on_policy = (
    ~dg.AutomationCondition.in_progress()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & TrainingPolicy()  # last: it reads the lake only when nothing is in progress
)
"""``trained_model``'s condition."""

training_automation = stage_automation(
    "training",
    ["trained_model", "simulation_report"],  # the gate in the run that trains the model
    "Trains when the trigger policy asks (a new dataset version adds enough clips over the "
    "current model's, or a scenario category grows enough; not during a rollout), and gates "
    "the new model in simulation in the same run.",
)

"""The loop as a whole: ``loop_report``, reported by ``dataloop demo`` after each of its
iterations (no Dagster run computes it: it is the demo driver's observation of the loop)."""

import dagster as dg

from dataloop.demo.report import LOOP_REPORT

loop_report = dg.AssetSpec(
    LOOP_REPORT,
    group_name="release",
    kinds={"python"},
    tags={"dataloop/stage": "release"},
    description="Per demo iteration: closed-loop score of the new model on the gate's stock "
    "scenarios, fleet disengagements per 1000 km and training-dataset size (plot and table).",
)

"""The executor of runs no job names: those the automation sensors request (the implicit
asset job) follow ``DATALOOP_EXECUTOR`` as the stage jobs do."""

import dagster as dg

from dataloop.infra.executors import stage_executor


@dg.definitions
def executor() -> dg.Definitions:
    return dg.Definitions(executor=stage_executor())

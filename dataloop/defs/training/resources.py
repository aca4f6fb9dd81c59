"""The Pipes client that runs training outside the code location (a subprocess here; see
docs/training.md for PipesK8sClient on a cluster)."""

import dagster as dg


@dg.definitions
def training_resources() -> dg.Definitions:
    return dg.Definitions(resources={"pipes_subprocess_client": dg.PipesSubprocessClient()})

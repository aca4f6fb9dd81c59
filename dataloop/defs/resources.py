"""Resources, chosen by environment from environment variables."""

import os

import dagster as dg

from dataloop.lake.store import DEFAULT_LAKE, ObjectStore, open_store


class LakeResource(dg.ConfigurableResource):
    """The lake: ``DATALOOP_LAKE`` (a folder, default ./.dataloop/lake, or s3://bucket/prefix)."""

    url: str

    def store(self) -> ObjectStore:
        return open_store(self.url)


def lake_resource() -> LakeResource:
    if os.environ.get("DATALOOP_LAKE"):
        return LakeResource(url=dg.EnvVar("DATALOOP_LAKE"))
    # A relative default is pinned to an absolute path here, so every run process agrees.
    return LakeResource(url=os.path.abspath(DEFAULT_LAKE))


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"lake": lake_resource()})

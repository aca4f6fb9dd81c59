"""The lake: one object store (local folder or S3), its key layout and content addressing."""

from dataloop.lake.store import (
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    PartInfo,
    PreconditionFailed,
    open_store,
)

__all__ = [
    "ObjectExists",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "PartInfo",
    "PreconditionFailed",
    "open_store",
]

"""The message definitions the package ships, to check built-in adapters when they load: the
contract's protobuf schemas, every Foxglove well-known schema (protobuf, and JSON with the
same fields) and the standard ROS 2 messages."""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from google.protobuf import descriptor_pool

from dataloop.ingest.adapters.fields import FieldType, from_protobuf, from_ros


@lru_cache(maxsize=1)
def protobuf_pool() -> descriptor_pool.DescriptorPool:
    import foxglove_schemas_protobuf

    import dataloop.fleet.schemas  # noqa: F401  (adds the contract to the default pool)

    for module in pkgutil.iter_modules(foxglove_schemas_protobuf.__path__):
        if module.name.endswith("_pb2"):
            importlib.import_module(f"foxglove_schemas_protobuf.{module.name}")
    return descriptor_pool.Default()


@lru_cache(maxsize=256)
def known_fields(schema: str, encoding: str) -> FieldType | None:
    """The field tree of a schema the package knows in ``encoding``, else None (checked
    against the log's own definition at decode time)."""
    if encoding in ("protobuf", "json"):
        try:
            return from_protobuf(protobuf_pool().FindMessageTypeByName(schema))
        except KeyError:
            return None
    if encoding == "cdr":
        from dataloop.fleet.ros2_msgs import MSGS, definition

        pkg, *_, typ = schema.split("/")
        if f"{pkg}/{typ}" in MSGS:
            return from_ros(schema, definition(schema))
    return None

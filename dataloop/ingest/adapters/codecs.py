"""Message codecs: for a channel's schema (as the log embeds it), its field tree and a parser
from payload bytes to a message whose fields an adapter's paths read.

- ``protobuf``: a class built from the log's own FileDescriptorSet (upb, the C runtime);
- ``cdr`` (ROS 2, ``ros2msg``) and ``ros1`` (``ros1msg``): the dynamic decoders of
  mcap-ros2-support and mcap-ros1-support, built from the definition text the log embeds (any
  failure of theirs on a payload means it does not decode);
- ``json`` (``jsonschema``): ``json.loads``; bytes fields are base64 strings.

Attribute-style messages (protobuf, ROS) and dicts (JSON) are read through the same compiled
paths (``extract.getter``)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError as ProtobufDecodeError
from mcap.records import Schema
from mcap_ros1 import decoder as ros1
from mcap_ros2 import decoder as ros2

from dataloop.ingest.adapters.fields import FieldType, from_jsonschema, from_protobuf, from_ros

SCHEMA_ENCODINGS = {
    "protobuf": "protobuf",
    "json": "jsonschema",
    "cdr": "ros2msg",
    "ros1": "ros1msg",
}
"""Message encoding -> the schema encoding a channel of it carries."""


LARGE_PAYLOAD = 1024
"""Protobuf payloads over this many bytes parse into a fresh message. A reused message keeps
every payload it parsed in its arena (upb frees the arena with the message): for camera
frames that made the parse several times slower, and memory grew with the drive."""
REUSES = 4096
"""Smaller payloads parse into a reused message, renewed after this many (by the generated
writers of ``extract``), so that its arena stays small."""


class CodecError(ValueError):
    """The schema embedded in the log cannot be read."""


@dataclass(frozen=True)
class Codec:
    encoding: str
    fields: FieldType
    parse: Callable[[bytes | memoryview], Any]
    attributes: bool
    """Fields are attributes (protobuf, ROS) rather than dict keys (JSON)."""
    errors: tuple[type[Exception], ...]
    """What ``parse`` raises on a payload that does not decode."""
    message_class: Any = None
    """Protobuf: the class, so that one channel can parse into one reused message."""

    def parser(self) -> Callable[[bytes | memoryview], Any]:
        """A parse function for one channel (its own reused message where that is faster:
        creating a protobuf message costs more than most payloads' parsing; a payload over
        ``LARGE_PAYLOAD`` bytes gets a fresh one)."""
        if self.message_class is None:
            return self.parse
        msg = self.message_class()
        parse, fresh = msg.ParseFromString, self.message_class.FromString

        def reuse(payload: bytes | memoryview) -> Any:
            if len(payload) > LARGE_PAYLOAD:
                return fresh(payload)
            parse(payload)
            return msg

        return reuse


@functools.lru_cache(maxsize=256)
def codec(message_encoding: str, schema_encoding: str, name: str, data: bytes) -> Codec:
    """The codec of one schema; raises :class:`CodecError` when its definition is unreadable
    or its encoding is not ``SCHEMA_ENCODINGS[message_encoding]``."""
    expected = SCHEMA_ENCODINGS.get(message_encoding)
    if expected is None or schema_encoding != expected:
        raise CodecError(
            f"message encoding {message_encoding!r} with schema encoding {schema_encoding!r}"
        )
    try:
        return _BUILDERS[message_encoding](name, data)
    except CodecError:
        raise
    except Exception as err:  # a hostile or broken definition, in any of four parsers
        raise CodecError(
            f"schema {name!r} ({schema_encoding}): {type(err).__name__}: {err}"
        ) from err


def _protobuf(name: str, data: bytes) -> Codec:
    """The class the log's FileDescriptorSet defines; a log that embeds none (the schema
    data is optional to some writers) gets the package's own definition of a known name."""
    if data:
        fds = descriptor_pb2.FileDescriptorSet.FromString(data)
        pool = descriptor_pool.DescriptorPool()
        for f in fds.file:
            pool.Add(f)
    else:
        from dataloop.ingest.adapters.known import protobuf_pool

        pool = protobuf_pool()
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(name))

    def parse(payload: bytes | memoryview) -> Any:
        msg = cls()
        msg.ParseFromString(payload)
        return msg

    fields = from_protobuf(cls.DESCRIPTOR)
    return Codec("protobuf", fields, parse, True, (ProtobufDecodeError,), cls)


def _ros(encoding: str, factory: Any) -> Callable[[str, bytes], Codec]:
    def build(name: str, data: bytes) -> Codec:
        schema = Schema(id=0, name=name, encoding=SCHEMA_ENCODINGS[encoding], data=data)
        decode = factory().decoder_for(encoding, schema)
        if decode is None:
            raise CodecError(f"schema {name!r}: no {encoding} decoder")
        fields = from_ros(name, data.decode())
        return Codec(encoding, fields, lambda p: decode(bytes(p)), True, (Exception,))

    return build


def _json(name: str, data: bytes) -> Codec:
    """JSON Schema is optional in MCAP: without one, a known schema's fields (Foxglove's
    JSON mirrors its protobuf), else nothing to check paths against."""
    from dataloop.ingest.adapters.known import known_fields

    doc = json.loads(data) if data else {}
    fields = from_jsonschema(doc if isinstance(doc, dict) else {}, name)
    if not fields.children:
        fields = known_fields(name, "json") or FieldType("any", type_name=name)
    return Codec("json", fields, lambda p: json.loads(bytes(p)), False, (ValueError,))


_BUILDERS: dict[str, Callable[[str, bytes], Codec]] = {
    "protobuf": _protobuf,
    "cdr": _ros("cdr", ros2.DecoderFactory),
    "ros1": _ros("ros1", ros1.DecoderFactory),
    "json": _json,
}

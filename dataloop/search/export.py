"""Export a hit as an MCAP cut of its drive that opens in Foxglove: every message between the
clip's start and end with the log's own schemas and channels, camera frames swapped for their
anonymised versions and GNSS for the public (geofenced) positions.

Nothing of the raw log that compliance removed leaves the lake: a camera frame without an
anonymised version is dropped, and simulator ground truth (attachments) is not copied.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dataloop.fleet import contract
from dataloop.ingest.adapters import AdapterSet, installed
from dataloop.ingest.adapters.codecs import codec
from dataloop.ingest.adapters.extract import Binding, bind
from dataloop.ingest.tables import read_table
from dataloop.lake import ledger
from dataloop.lake.ranged import open_ranged
from dataloop.lake.store import ObjectStore
from dataloop.search.frames import open_pack

KEPT_METADATA = (contract.DRIVE_METADATA,)
"""Metadata records copied from the log (the drive's identity); the rest stays behind."""


PRIVATE = {"frames": "foxglove.CompressedImage", "gnss": "foxglove.LocationFix"}
"""Tables whose channels a cut rewrites (anonymised frames, public positions), and the one
schema it rewrites them in. A cut copies only what an adapter maps: a camera or GNSS channel of
another schema or encoding (ROS 2, JSON, a raw ``RawImage`` or ``sensor_msgs/Image`` camera),
and any channel no adapter maps, is left out and named in its ``dataloop.cut`` metadata."""


def _role(adapters: AdapterSet, schema: Any, channel: Any) -> tuple[str | None, Binding | None]:
    """The table a channel's adapter fills, and its binding when the cut can rewrite it."""
    adapter = adapters.find(channel.topic, schema.name, channel.message_encoding)
    if adapter is None:
        return None, None
    rewritable = (
        channel.message_encoding == "protobuf" and PRIVATE.get(adapter.table) == schema.name
    )
    if not rewritable:
        return adapter.table, None
    found = codec("protobuf", schema.encoding, schema.name, schema.data)
    return adapter.table, bind(adapter, found, channel.topic)


def cut_name(vehicle: str, drive: str, start_ns: int, end_ns: int) -> str:
    return f"{vehicle}_{drive}_{start_ns}-{end_ns}.mcap"


def export_cut(
    store: ObjectStore, vehicle: str, drive: str, start_ns: int, end_ns: int, path: str | Path
) -> dict[str, Any]:
    """Write the cut [start_ns, end_ns] of a compliant drive to ``path``; returns what went in
    (messages per topic, first and last log time)."""
    from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
    from foxglove_schemas_protobuf.LocationFix_pb2 import LocationFix
    from mcap.reader import make_reader
    from mcap.writer import CompressionType, Writer

    state = ledger.drive(store, vehicle, drive)
    if state is None or not state.compliant:
        raise LookupError(f"{vehicle}/{drive} is not a compliant drive")
    record, compliance = state.ingest, state.compliance
    pack = open_pack(store, vehicle, drive, compliance)
    frame_at = {
        (str(c), int(t)): i
        for i, (t, c) in enumerate(zip(pack.t, pack.camera, strict=True))
        if start_ns <= t <= end_ns
    }
    jpegs = dict(zip(frame_at, pack.read(store, list(frame_at.values())), strict=True))
    adapters = installed().get()
    left_out: set[str] = set()
    roles: dict[int, tuple[str | None, Binding | None]] = {}
    gnss = read_table(store, compliance["gnss_public"])
    sensors = (  # (an older record has none: its fixes are left out, never the raw ones)
        gnss.column("sensor").to_pylist() if "sensor" in gnss.column_names else [None] * len(gnss)
    )
    public = {
        (sensor, t): position
        for sensor, t, *position in zip(
            sensors,
            gnss.column("t").cast("int64").to_pylist(),
            gnss.column("latitude").to_pylist(),
            gnss.column("longitude").to_pylist(),
            strict=True,
        )
    }
    counts: dict[str, int] = {}
    first = last = None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_ranged(store, record["log_key"]) as raw, path.open("wb") as out:
        reader = make_reader(raw)
        writer = Writer(out, compression=CompressionType.ZSTD)
        writer.start(profile=contract.PROFILE, library="dataloop-search")
        schemas: dict[int, int] = {}
        channels: dict[int, int] = {}

        def channel_id(schema, channel) -> int:
            if channel.id not in channels:
                if schema.id not in schemas:
                    schemas[schema.id] = writer.register_schema(
                        schema.name, schema.encoding, schema.data
                    )
                channels[channel.id] = writer.register_channel(
                    channel.topic, channel.message_encoding, schemas[schema.id], channel.metadata
                )
            return channels[channel.id]

        summary = reader.get_summary()
        if summary is not None:  # every channel, even one silent during the cut
            for channel in sorted(summary.channels.values(), key=lambda c: c.id):
                channel_id(summary.schemas[channel.schema_id], channel)
        for schema, channel, message in reader.iter_messages(
            starting_at=start_ns, ending_at=end_ns, log_time_order=True
        ):
            data = message.data
            if channel.id not in roles:
                roles[channel.id] = _role(adapters, schema, channel)
            table, binding = roles[channel.id]
            if table is None or (table in PRIVATE and binding is None):
                left_out.add(channel.topic)  # unknown, or a camera or position it can't rewrite
                continue
            if table == "frames":
                image = CompressedImage()
                image.ParseFromString(data)
                key = (binding.sensor_of(image), message.log_time)
                if key not in jpegs:
                    continue  # never the raw frame
                image.data = jpegs[key]
                data = image.SerializeToString()
            elif table == "gnss":  # each receiver's own public fixes
                fix = LocationFix()
                fix.ParseFromString(data)
                key = (binding.sensor_of(fix), message.log_time)
                if key not in public:
                    continue
                fix.latitude, fix.longitude = public[key]
                data = fix.SerializeToString()
            writer.add_message(
                channel_id(schema, channel),
                log_time=message.log_time,
                data=data,
                publish_time=message.publish_time,
                sequence=message.sequence,
            )
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
            first = message.log_time if first is None else first
            last = message.log_time
        for meta in reader.iter_metadata():
            if meta.name in KEPT_METADATA:
                writer.add_metadata(meta.name, dict(meta.metadata))
        writer.add_metadata(
            "dataloop.cut",
            {
                "vehicle": vehicle,
                "drive": drive,
                "start_ns": str(start_ns),
                "end_ns": str(end_ns),
                "camera": "anonymised",
                "left_out": json.dumps(sorted(left_out)),
                "compliance": json.dumps(compliance.get("anonymiser", {})),
            },
        )
        writer.finish()
    return {
        "path": str(path),
        "messages": counts,
        "left_out": sorted(left_out),
        "first_ns": first,
        "last_ns": last,
        "bytes": path.stat().st_size,
    }

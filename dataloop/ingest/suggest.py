"""A draft adapter for the channels of a log that no adapter maps: each channel's schema read
from the log, its fields listed, a table guessed from the field names (the one whose columns
they resemble most) and the columns that resemble a field pre-filled.

``dataloop adapters suggest FILE`` prints it; a person checks units and paths and saves it
under ``assets/ingest/adapters/``."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml
from mcap.records import Channel, Schema
from mcap.stream_reader import StreamReader

from dataloop.ingest.adapters import AdapterSet, installed
from dataloop.ingest.adapters.codecs import CodecError, codec
from dataloop.ingest.adapters.fields import FieldType, describe, resolve
from dataloop.ingest.tables import ADAPTER_COLUMNS, SCHEMAS

_MATCH = 0.6
"""Least similarity (difflib ratio) of a field's last name to a column's for a pre-fill."""


def channels(path: Path) -> list[tuple[Channel, Schema | None]]:
    """Every channel of the log, with its schema (streaming: any layout, summary or not)."""
    schemas: dict[int, Schema] = {}
    out: dict[int, tuple[Channel, Schema | None]] = {}
    with path.open("rb") as f:
        for record in StreamReader(f, skip_magic=False).records:
            if isinstance(record, Schema):
                schemas[record.id] = record
            elif isinstance(record, Channel) and record.id not in out:
                out[record.id] = (record, schemas.get(record.schema_id))
    return list(out.values())


def _guess(fields: FieldType) -> tuple[str | None, dict[str, str]]:
    """The table whose columns the fields resemble most (each field fills one column at
    most, best matches first), and column -> field path."""
    leaves = [
        (p, p.rsplit(".", 1)[-1].lower(), resolve(fields, p).kind) for p, _ in describe(fields)
    ]
    best: tuple[float, str | None, dict[str, str]] = (0.0, None, {})
    for table, columns in ADAPTER_COLUMNS.items():
        ranked = sorted(
            (
                (difflib.SequenceMatcher(None, column, leaf).ratio(), column, path)
                for column in columns
                for path, leaf, kind in leaves
                if _fits(table, column, kind)
            ),
            reverse=True,
        )
        picked: dict[str, str] = {}
        score = 0.0
        for ratio, column, path in ranked:
            if ratio >= _MATCH and column not in picked and path not in picked.values():
                picked[column] = path
                score += ratio
        if score > best[0]:
            best = (score, table, {c: picked[c] for c in columns if c in picked})
    return best[1], best[2]


def _fits(table: str, column: str, kind: str) -> bool:
    """Whether a field of ``kind`` can fill the column as it is (a number is no gear name:
    that takes an ``enum`` map, which a person writes)."""
    if column not in SCHEMAS[table].names:  # an input of a blob (data, fields)
        return True
    wanted = SCHEMAS[table].field(column).type
    if pa.types.is_string(wanted):
        return kind == "string"
    return kind in ("number", "bool") if not pa.types.is_list(wanted) else True


def suggest(path: Path, adapters: AdapterSet | None = None) -> str:
    """The draft (YAML text) for the unmapped channels of ``path``; empty when every
    channel is mapped."""
    adapters = adapters or installed().get()
    drafts: list[dict[str, Any]] = []
    notes: list[str] = []
    seen = set()
    for channel, schema in channels(path):
        if schema is None or (schema.name, channel.message_encoding) in seen:
            continue
        if adapters.find(channel.topic, schema.name, channel.message_encoding):
            continue
        seen.add((schema.name, channel.message_encoding))
        try:
            found = codec(channel.message_encoding, schema.encoding, schema.name, schema.data)
        except CodecError as err:
            notes.append(f"# {channel.topic}: cannot be mapped: {err}")
            continue
        draft: dict[str, Any] = {"schema": schema.name, "encodings": [channel.message_encoding]}
        table, columns = _guess(found.fields)
        arrays = [(n, f) for n, f in found.fields.children.items() if f.repeated and f.children]
        if len(arrays) == 1 and len(columns) < 2:  # a list of things: one row per element
            rows, element = arrays[0]
            table, columns = _guess(FieldType("message", children=element.children))
            draft["rows"] = rows
            found_fields = FieldType("message", children=element.children)
        else:
            found_fields = found.fields
        draft["table"] = table or "CHOOSE"
        draft["columns"] = columns or {"CHOOSE": "a.field.path"}
        drafts.append(draft)
        listing = "\n".join(f"#   {p}: {kind}" for p, kind in describe(found_fields))
        if "rows" in draft:
            listing = f"#   (one row per element of {draft['rows']})\n{listing}"
        notes.append(f"# {schema.name} (topic {channel.topic}) has these fields:\n{listing}")
    if not drafts:
        return ""
    head = (
        f"# Draft adapters for the unmapped channels of {path.name}: check each table, path and "
        "unit\n# (columns are SI: m, m/s, rad, m/s^2, fractions 0..1; add `unit: km/h` and so "
        "on).\n# Tables and their columns: docs/drive-log-contract.md\n"
    )
    body = yaml.safe_dump({"adapters": drafts}, sort_keys=False)
    return head + body + "\n" + "\n".join(notes) + "\n"

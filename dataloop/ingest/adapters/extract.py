"""An adapter bound to one channel: compiled field paths that turn each decoded message into
rows of its canonical table.

Binding checks every path against the channel's own schema (a path it lacks raises
:class:`PathError`); after that, reading a message is one parse and one getter per column
(``operator.attrgetter`` where the path has no index)."""

from __future__ import annotations

import base64
import functools
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from dataloop.ingest.adapters import Adapter
from dataloop.ingest.adapters.codecs import Codec
from dataloop.ingest.adapters.fields import FieldType, PathError, parse_path, resolve
from dataloop.ingest.jpeg import jpeg_header
from dataloop.lake.hashing import sha256_bytes
from dataloop.rules.schemas import UNITS

Getter = Callable[[Any], Any]
_MESSAGE_HEADER_BYTES = 9 + 22  # record opcode and length, then channel, sequence and times


def getter(path: str, attributes: bool) -> Getter:
    """Reads ``path`` of a message (attributes) or a decoded JSON document (keys); a missing
    JSON key or an index past an array's end reads as None."""
    steps = parse_path(path)
    if attributes and all(index is None for _, index in steps):
        return operator.attrgetter(path)

    def get(msg: Any) -> Any:
        value = msg
        for name, index in steps:
            if attributes:
                value = getattr(value, name)
            else:
                value = value.get(name) if isinstance(value, dict) else None
            if index is not None and value is not None:
                value = value[index] if index < len(value) else None
            if value is None:
                return None
        return value

    return get


def _part(value: Any, name: str) -> Any:
    return value.get(name) if isinstance(value, dict) else getattr(value, name, None)


def _sigma_h(cov: Any) -> float:
    return max(cov[0], cov[4]) ** 0.5 if cov is not None and len(cov) == 9 else math.nan


def _yaw(q: Any) -> float:
    x, y, z, w = (_part(q, k) for k in "xyzw")
    return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


REDUCERS: dict[str, Callable[[Any], Any]] = {"sigma_h": _sigma_h, "yaw": _yaw, "count": len}


def stamp_ns(value: Any) -> int:
    """Nanoseconds of a stamp: ROS 2 (sec, nanosec), ROS 1 (secs, nsecs), Foxglove/protobuf
    (sec, nsec or seconds, nanos) or an integer of nanoseconds."""
    if isinstance(value, int):
        return value
    for sec, nsec in (("sec", "nanosec"), ("secs", "nsecs"), ("sec", "nsec"), ("seconds", "nanos")):
        s, n = _part(value, sec), _part(value, nsec)
        if s is not None and n is not None:
            return int(s) * 1_000_000_000 + int(n)
    raise ValueError(f"{value!r} is not a timestamp")


def enum_names(values: dict[int, str]) -> dict[int, str]:
    """Protobuf enum value names without their common prefix, lower case
    (``GEAR_DRIVE`` -> ``drive``)."""
    names = list(values.values())
    prefix = names[0][: names[0].rfind("_") + 1] if names else ""
    while prefix and not all(n.startswith(prefix) for n in names):
        prefix = prefix[: prefix[:-1].rfind("_") + 1]
    return {k: v[len(prefix) :].lower() for k, v in values.items()}


_NOT_A_NAME = {"camera", "cameras", "image", "image_raw", "image_rect", "compressed", "sensing"}


def sensor_from_topic(topic: str) -> str:
    """A sensor name from its topic when the adapter gives none: the topic's parts that say
    which sensor (``/camera/front/image`` and ``/sensing/camera/front/image_raw/compressed``
    -> ``front``)."""
    parts = [p for p in topic.strip("/").split("/") if p and p.lower() not in _NOT_A_NAME]
    return "_".join(parts) or re.sub(r"\W+", "_", topic.strip("/")) or "default"


def _column(
    spec: dict[str, Any], field: FieldType | None, read_path: Callable[[str], Getter], where: str
) -> Getter:
    if "const" in spec:
        const = spec["const"]
        return lambda _m: const
    get = read_path(spec["path"])
    steps: list[Callable[[Any], Any]] = []
    if spec.get("reduce"):
        steps.append(REDUCERS[spec["reduce"]])
    if spec.get("enum") == "names":
        if field is None or not field.enum:
            raise PathError(f"{where}: {spec['path']!r} has no enum names; map its values")
        names = enum_names(field.enum)
        steps.append(lambda v: names.get(v, "unknown"))
    elif isinstance(spec.get("enum"), dict):
        mapping = spec["enum"]
        steps.append(lambda v: mapping.get(v, "unknown"))
    factor = UNITS[spec["unit"]] if spec.get("unit") else 1.0
    factor *= spec.get("scale") or 1.0
    offset = spec.get("offset") or 0.0
    if factor != 1.0 or offset:
        steps.append(lambda v: v * factor + offset)
    if not steps:
        return get

    def read(msg: Any) -> Any:
        value = get(msg)
        for step in steps:
            if value is None:
                return None
            value = step(value)
        return value

    return read


@dataclass
class Binding:
    """One channel's adapter, compiled against the channel's schema."""

    adapter: Adapter
    codec: Codec
    topic: str
    sensor: str | Getter
    time: Callable[[Any, int, int], int]
    rows: Getter | None
    columns: list[tuple[str, Getter]]
    image: Getter | None = None
    """The image bytes of a frame (the ``data`` column of a frames adapter)."""

    @property
    def table(self) -> str:
        return self.adapter.table

    def rows_of(
        self, payload: memoryview, log_time: int, publish_time: int
    ) -> tuple[Any, int, list]:
        """(message, time, [element per row]); raises ``codec.errors`` on a bad payload."""
        msg = self.codec.parse(payload)
        t = self.time(msg, log_time, publish_time)
        return msg, t, (list(self.rows(msg) or ()) if self.rows else [msg])

    def sensor_of(self, msg: Any) -> str:
        return self.sensor if isinstance(self.sensor, str) else str(self.sensor(msg) or "")


def _fast_cdr(adapter: Adapter, codec: Codec, schema: str, text: str):
    """(reader, path -> getter) of a generated CDR reader for ``adapter``'s paths, or None
    where it needs the dynamic decoder (rows, an element of an array of messages)."""
    from dataloop.ingest.adapters.cdr import Unsupported, compile_reader

    if codec.encoding != "cdr" or adapter.rows:
        return None
    wanted: set[str] = set()
    getters: dict[str, Getter] = {}
    for _what, path in adapter.paths():
        steps = parse_path(path)
        if any(index is not None for _, index in steps[:-1]):
            return None
        base = ".".join(name for name, _ in steps)
        index = steps[-1][1]
        node = resolve(codec.fields, base)
        if node.kind == "message" and not node.repeated:  # a stamp, a quaternion
            leaves = [f"{base}.{c}" for c, f in node.children.items() if f.kind != "message"]
            if len(leaves) != len(node.children):
                return None
            wanted |= set(leaves)
            getters[path] = lambda v, base=base, names=list(node.children): {
                n: v[f"{base}.{n}"] for n in names
            }
        elif index is not None:
            wanted.add(base)
            getters[path] = lambda v, base=base, i=index: v[base][i] if i < len(v[base]) else None
        else:
            wanted.add(base)
            getters[path] = operator.itemgetter(base)
    slow = {w: getter(w, attributes=True) for w in wanted}

    def fallback(payload: bytes) -> dict[str, Any]:
        msg = codec.parse(payload)
        return {w: get(msg) for w, get in slow.items()}

    try:
        return compile_reader(schema, text, wanted, fallback), getters
    except Unsupported:
        return None


def bind(adapter: Adapter, codec: Codec, topic: str, schema_text: str = "") -> Binding:
    """Compile ``adapter`` for a channel of ``topic`` whose schema is ``codec``'s (a CDR
    channel gets a generated reader of just its paths, given the schema's ``schema_text``);
    raises :class:`PathError` naming the adapter's file and line when a path is not in the
    schema."""
    adapter.check(codec.fields)
    fast = _fast_cdr(adapter, codec, codec.fields.type_name, schema_text) if schema_text else None
    if fast is not None:
        reader, fast_getters = fast
        codec = replace(codec, parse=lambda p: reader(bytes(p)), errors=(Exception,))
        read_path: Callable[[str], Getter] = fast_getters.__getitem__
    else:
        read_path = functools.partial(getter, attributes=codec.attributes)
    element = codec.fields
    rows = None
    if adapter.rows:
        rows = read_path(adapter.rows)
        element = FieldType("message", children=resolve(codec.fields, adapter.rows).children)
    columns = [
        (name, _column(spec, resolve(element, spec["path"]) if "path" in spec else None,
                       read_path, adapter.where))
        for name, spec in adapter.columns
    ]  # fmt: skip
    if isinstance(adapter.sensor, str):
        sensor: str | Getter = adapter.sensor
    elif isinstance(adapter.sensor, dict):
        sensor = read_path(adapter.sensor["path"])
    else:
        sensor = sensor_from_topic(topic)
    if adapter.time == "publish_time":
        time: Callable[[Any, int, int], int] = lambda _m, _log, pub: pub  # noqa: E731
    elif isinstance(adapter.time, dict):
        stamp = read_path(adapter.time["path"])
        time = lambda m, _log, _pub: stamp_ns(stamp(m))  # noqa: E731
    else:
        time = lambda _m, log, _pub: log  # noqa: E731
    image = dict(columns).pop("data", None)
    columns = [(n, g) for n, g in columns if n != "data"]
    return Binding(adapter, codec, topic, sensor, time, rows, columns, image)


class TableRows:
    """Column lists of one table, filled message by message; a column that a channel's
    adapter leaves out is null in that channel's rows."""

    def __init__(self, names: list[str]):
        self.cols: dict[str, list[Any]] = {n: [] for n in names}
        self._missing: dict[int, list[list[Any]]] = {}

    def __len__(self) -> int:
        return len(self.cols["t"])

    def add(
        self, binding: Binding, payload: memoryview, t_log: int, t_pub: int, loc: tuple
    ) -> None:
        msg, t, elements = binding.rows_of(payload, t_log, t_pub)
        cols = self.cols
        times = cols["t"]
        for element in elements:
            times.append(t)
            for name, get in binding.columns:
                cols[name].append(get(element))
        if binding.image is not None:
            self._frame(binding, msg, binding.image(msg), payload, loc)
        missing = self._missing.get(id(binding))
        if missing is None:
            given = {"t", *(n for n, _ in binding.columns)}
            given |= set(FRAME_COLUMNS) if binding.image is not None else set()
            missing = self._missing[id(binding)] = [v for n, v in cols.items() if n not in given]
        for values in missing:
            values.extend([None] * (len(times) - len(values)))

    def _frame(
        self, binding: Binding, msg: Any, data: Any, payload: memoryview, loc: tuple
    ) -> None:
        c = self.cols
        encoding = ""
        if isinstance(data, str):  # JSON: base64 text
            text, encoding = data.encode(), "base64"
            data = base64.b64decode(text)
        else:
            text = data = bytes(data or b"")
        chunk_offset, compression, chunk_length, uncompressed, offset, length = loc
        at = bytes(payload).find(text) if text else 0
        c["camera"].append(binding.sensor_of(msg))
        c["seq"].append(len(c["seq"]))
        c["jpeg_bytes"].append(len(data))
        c["jpeg_sha256"].append(sha256_bytes(data))
        valid, width, height = jpeg_header(data)
        c["jpeg_valid"].append(valid)
        c["width"].append(width)
        c["height"].append(height)
        c["chunk_offset"].append(chunk_offset)
        c["chunk_compression"].append(compression)
        c["chunk_length"].append(chunk_length)
        c["chunk_uncompressed_size"].append(uncompressed)
        c["message_offset"].append(offset)
        c["message_length"].append(length)
        c["image_offset"].append(_MESSAGE_HEADER_BYTES + max(at, 0))
        c["image_length"].append(len(text))
        c["image_encoding"].append(encoding)


FRAME_COLUMNS = (
    "camera", "seq", "jpeg_bytes", "jpeg_sha256", "jpeg_valid", "width", "height",
    "chunk_offset", "chunk_compression", "chunk_length", "chunk_uncompressed_size",
    "message_offset", "message_length", "image_offset", "image_length", "image_encoding",
)  # fmt: skip
"""What ingest derives for a frame from its image bytes and where they lie."""

"""An adapter bound to one channel: compiled field paths that turn each decoded message into
rows of its canonical table.

Binding checks every path against the channel's own schema (a path it lacks raises
:class:`PathError`); after that, reading a message is one parse and one getter per column
(``operator.attrgetter`` where the path has no index). Each channel's writer is one generated
function that reads attribute paths inline (``m.accel_x``) and calls the other getters; its
test compares it with the general path (``TableRows.writer(binding, generated=False)``)."""

from __future__ import annotations

import base64
import functools
import keyword
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from dataloop.ingest.adapters import Adapter, codecs
from dataloop.ingest.adapters.codecs import Codec
from dataloop.ingest.adapters.fields import FieldType, PathError, parse_path, resolve
from dataloop.ingest.frames import RAW, raw_layout
from dataloop.ingest.jpeg import jpeg_header
from dataloop.ingest.tables import RAW_FRAME, SENSOR_COLUMN
from dataloop.lake.hashing import sha256_bytes
from dataloop.rules.schemas import UNITS

Getter = Callable[[Any], Any]
ROW_ERRORS = (ValueError, TypeError, AttributeError, IndexError, KeyError, OverflowError)
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
    if cov is None or len(cov) != 9:
        return math.nan
    variance = max(cov[0], cov[4])
    return variance**0.5 if variance >= 0 and math.isfinite(variance) else math.nan


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


_NOT_A_NAME = {
    "camera", "cameras", "image", "image_raw", "image_rect", "compressed", "sensing",
    "lidar", "points", "points_raw", "pointcloud", "point_cloud", "camera_info", "calibration",
    "imu", "imu_data", "imu_raw", "gnss", "gps", "fix", "nav_sat_fix", "navsatfix",
}  # fmt: skip
"""Words of a topic that say what kind of sensor it is, not which one (``data`` and
``data_raw`` stay: ``/imu/data`` and ``/imu/data_raw`` are two streams)."""


def sensor_from_topic(topic: str) -> str:
    """A sensor name from its topic when the adapter gives none: the topic's parts that say
    which sensor (``/camera/front/image`` and ``/sensing/camera/front/image_raw/compressed``
    -> ``front``), else the whole topic (``/gnss/fix`` -> ``gnss_fix``). A function of the
    topic alone: ingest and cuts agree, and two topics name two sensors unless their
    distinctive parts agree (then an adapter's ``sensor`` names them)."""
    parts = [p for p in topic.strip("/").split("/") if p and p.lower() not in _NOT_A_NAME]
    return "_".join(parts) or re.sub(r"\W+", "_", topic.strip("/")) or "default"


def _enum_map(spec: dict[str, Any], field: FieldType | None, where: str) -> dict | None:
    """A column's value names (``enum``), or None."""
    if spec.get("enum") == "names":
        if field is None or not field.enum:
            raise PathError(f"{where}: {spec['path']!r} has no enum names; map its values")
        return dict(enum_names(field.enum))
    if isinstance(spec.get("enum"), dict):
        return dict(spec["enum"])
    return None


def _affine(spec: dict[str, Any]) -> tuple[float, float]:
    """A column's (factor, offset): its unit's and scale's product, and its offset."""
    factor = UNITS[spec["unit"]] if spec.get("unit") else 1.0
    factor *= spec.get("scale") or 1.0
    return factor, spec.get("offset") or 0.0


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
    names = _enum_map(spec, field, where)
    factor, offset = _affine(spec)
    if names is not None and not steps:  # the common case, in one call: a value's name
        names[None] = None  # type: ignore[index]
        return lambda m: names.get(get(m), "unknown")
    if names is not None:
        steps.append(lambda v: names.get(v, "unknown"))
    if factor != 1.0 or offset:
        if not steps:
            return lambda m: None if (v := get(m)) is None else v * factor + offset
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


Source = tuple[str, dict[str, Any]]
"""An expression that reads a column inline in a generated writer: its text (``{e}``: the
message or row element, ``{k}``: a suffix of the column's own names) and those names' values."""


def _attribute_source(path: str) -> str | None:
    """``{e}.a.b`` for a path of plain names (what ``operator.attrgetter`` reads), else None."""
    steps = parse_path(path)
    if any(i is not None or keyword.iskeyword(n) or not n.isidentifier() for n, i in steps):
        return None
    return "{e}." + path


def _column_source(spec: dict[str, Any], field: FieldType | None, where: str) -> Source | None:
    """What :func:`_column` reads, as an inline expression over an attribute-style message
    (None where it takes a call: a reduction, an indexed path)."""
    if "const" in spec:
        return "C{k}", {"C": spec["const"]}
    read = _attribute_source(spec["path"])
    if read is None or spec.get("reduce"):
        return None
    names = _enum_map(spec, field, where)
    factor, offset = _affine(spec)
    if names is not None:
        return f"N{{k}}.get({read}, 'unknown')", {"N": {**names, None: None}}
    if factor != 1.0 or offset:
        return f"(None if (v := {read}) is None else v * F{{k}} + O{{k}})", {
            "F": factor,
            "O": offset,
        }
    return read, {}


@dataclass
class Binding:
    """One channel's adapter, compiled against the channel's schema."""

    adapter: Adapter
    codec: Codec
    topic: str
    sensor: str | Getter
    time: Callable[[Any, int, int], int] | None
    """The row time from (message, log time, publish time); None: the log time."""
    rows: Getter | None
    columns: list[tuple[str, Getter]]
    blob: Getter | None = None
    """The image or point bytes (the ``data`` column of a frames or lidar_scans adapter)."""
    inputs: dict[str, Getter] = field(default_factory=dict)
    """Every column the adapter gives, by name (what a blob's derivation reads)."""

    @property
    def table(self) -> str:
        return self.adapter.table

    parse: Callable[[Any], Any] | None = None
    """This channel's parser (``codec.parser()``)."""
    errors: tuple[type[Exception], ...] = ()
    """What reading one message raises when its payload does not decode or fit the adapter
    (a null where a number belongs, a stamp that is no stamp)."""
    sources: dict[Any, Source] = field(default_factory=dict)
    """Inline expressions of column getters and of ``rows`` (keyed by the getter), where
    messages are read by attribute: what a generated writer reads without calls."""

    def __post_init__(self) -> None:
        if self.parse is None:
            self.parse = self.codec.parser()
        self.errors = (*self.codec.errors, *ROW_ERRORS)

    def sensor_of(self, msg: Any) -> str:
        return self.sensor if isinstance(self.sensor, str) else str(self.sensor(msg) or "")


def _dict_paths(paths: list[str], fields: FieldType) -> tuple[set[str], dict[str, Getter]] | None:
    """What a generated reader must store for ``paths`` (leaf paths, as dict keys), and a
    getter per path over its dict; None when a path reaches into an array of messages."""
    wanted: set[str] = set()
    getters: dict[str, Getter] = {}
    for path in paths:
        steps = parse_path(path)
        if any(index is not None for _, index in steps[:-1]):
            return None
        base = ".".join(name for name, _ in steps)
        index = steps[-1][1]
        node = resolve(fields, base)
        if node.kind == "message" and not node.repeated:  # a stamp, a quaternion
            if any(f.kind == "message" for f in node.children.values()):
                return None
            names = list(node.children)
            wanted |= {f"{base}.{n}" for n in names}
            getters[path] = lambda v, base=base, names=names: {n: v[f"{base}.{n}"] for n in names}
        elif index is not None:
            wanted.add(base)
            getters[path] = lambda v, base=base, i=index: v[base][i] if i < len(v[base]) else None
        else:
            wanted.add(base)
            getters[path] = operator.itemgetter(base)
    return wanted, getters


def _fast_cdr(adapter: Adapter, codec: Codec, schema: str, text: str):
    """(reader, top-level getters, column getters) of a generated CDR reader for ``adapter``'s
    paths (the columns' relative to each element of ``rows``, when it has rows), or None where
    the dynamic decoder is needed."""
    from dataloop.ingest.adapters.cdr import Unsupported, compile_reader

    if codec.encoding != "cdr":
        return None
    top = [p for what, p in adapter.paths() if what in ("@time", "@sensor")]
    inner = [p for what, p in adapter.paths() if not what.startswith("@")]
    planned = _dict_paths(top + ([] if adapter.rows else inner), codec.fields)
    rows: dict[str, set[str]] = {}
    if planned is None:
        return None
    wanted, getters = planned
    element_getters: dict[str, Getter] = {}
    if adapter.rows:
        element = FieldType("message", children=resolve(codec.fields, adapter.rows).children)
        planned_rows = _dict_paths(inner, element)
        if planned_rows is None or "[" in adapter.rows:
            return None
        rows[adapter.rows], element_getters = planned_rows
        getters[adapter.rows] = operator.itemgetter(adapter.rows)
    slow = {w: getter(w, attributes=True) for w in wanted}
    slow_rows = {w: getter(w, attributes=True) for w in rows.get(adapter.rows or "", ())}
    slow_list = getter(adapter.rows, attributes=True) if adapter.rows else None

    def fallback(payload: bytes) -> dict[str, Any]:
        msg = codec.parse(payload)
        out = {w: get(msg) for w, get in slow.items()}
        if slow_list is not None:
            elements = slow_list(msg) or ()
            out[adapter.rows] = [{w: g(e) for w, g in slow_rows.items()} for e in elements]
        return out

    try:
        reader = compile_reader(schema, text, wanted, fallback, rows)
    except Unsupported:
        return None
    return reader, getters, (element_getters if adapter.rows else getters)


def bind(adapter: Adapter, codec: Codec, topic: str, schema_text: str = "") -> Binding:
    """Compile ``adapter`` for a channel of ``topic`` whose schema is ``codec``'s (a CDR
    channel gets a generated reader of just its paths, given the schema's ``schema_text``);
    raises :class:`PathError` naming the adapter's file and line when a path is not in the
    schema."""
    adapter.check(codec.fields)
    fast = _fast_cdr(adapter, codec, codec.fields.type_name, schema_text) if schema_text else None
    if fast is not None:
        reader, top_getters, element_getters = fast
        codec = replace(codec, parse=lambda p: reader(bytes(p)), errors=(Exception,))
        read_path: Callable[[str], Getter] = top_getters.__getitem__
        read_element: Callable[[str], Getter] = element_getters.__getitem__
    else:
        read_path = read_element = functools.partial(getter, attributes=codec.attributes)
    element = codec.fields
    rows = None
    if adapter.rows:
        rows = read_path(adapter.rows)
        node = resolve(codec.fields, adapter.rows)
        element = node if node.kind == "any" else FieldType("message", children=node.children)
    by_attribute = fast is None and codec.attributes  # a protobuf or a dynamic ROS message
    columns, sources = [], {}
    for name, spec in adapter.columns:
        node = resolve(element, spec["path"]) if "path" in spec else None
        columns.append((name, get := _column(spec, node, read_element, adapter.where)))
        if by_attribute and (source := _column_source(spec, node, adapter.where)):
            sources[get] = source
    if rows is not None and by_attribute and (expr := _attribute_source(adapter.rows)):
        sources[rows] = (expr, {})
    if isinstance(adapter.sensor, str):
        sensor: str | Getter = adapter.sensor
    elif isinstance(adapter.sensor, dict):
        sensor = read_path(adapter.sensor["path"])
    else:
        sensor = sensor_from_topic(topic)
    if adapter.time == "publish_time":
        time: Callable[[Any, int, int], int] | None = lambda _m, _log, pub: pub  # noqa: E731
    elif isinstance(adapter.time, dict):
        stamp = read_path(adapter.time["path"])
        time = lambda m, _log, _pub: stamp_ns(stamp(m))  # noqa: E731
    else:
        time = None
    inputs = dict(columns)
    columns = [(n, g) for n, g in columns if n not in BLOB_INPUTS.get(adapter.table, ())]
    if adapter.table in SENSOR_COLUMN and adapter.table not in BLOB_INPUTS:  # not located
        name = sensor if isinstance(sensor, str) else None
        columns.append((SENSOR_COLUMN[adapter.table], (lambda _m: name) if name else sensor))
    blob = inputs.get("data")
    return Binding(
        adapter, codec, topic, sensor, time, rows, columns, blob, inputs, sources=sources
    )


@functools.lru_cache(maxsize=512)
def _compiled(source: str, name: str) -> Any:
    """Generated code compiled once per process (each drive binds its channels anew)."""
    return compile(source, name, "exec")


class TableRows:
    """Column lists of one table, filled message by message; a column that a channel's
    adapter leaves out is null in that channel's rows."""

    def __init__(self, names: list[str]):
        self.cols: dict[str, list[Any]] = {n: [] for n in names}
        self._plans: dict[int, tuple] = {}

    def __len__(self) -> int:
        return len(self.cols["t"])

    def _missing(self, binding: Binding) -> list[list[Any]]:
        """The column lists ``binding`` leaves null."""
        given = {"t", *(n for n, _ in binding.columns)}
        if binding.blob is not None:
            given |= {*DERIVED[binding.table][0], *LOCATOR_COLUMNS}
        return [values for n, values in self.cols.items() if n not in given]

    def _plan(self, binding: Binding) -> tuple:
        """(fill(message, time), columns the binding leaves null), per binding, once: fill is
        generated straight-line code (one append per column, no loop over the columns)."""
        cols = self.cols
        scope: dict[str, Any] = {"T": cols["t"].append, "R": binding.rows}
        lines = []
        for k, (name, get) in enumerate(binding.columns):
            scope[f"A{k}"], scope[f"G{k}"] = cols[name].append, get
            lines.append(f"A{k}(G{k}(e))")
        if binding.rows is None:
            body = ["def fill(e, t):", "    T(t)", *(f"    {x}" for x in lines)]
        else:
            body = ["def fill(m, t):", "    for e in R(m) or ():", "        T(t)"]
            body += [f"        {x}" for x in lines]
        exec(_compiled("\n".join(body), f"<rows of {binding.topic}>"), scope)  # noqa: S102
        plan = (scope["fill"], self._missing(binding))
        self._plans[id(binding)] = plan
        return plan

    def writer(self, binding: Binding, generated: bool = True) -> Callable[..., None]:
        """``write(payload, log_time, publish_time, chunk, offset, length)``: the rows of one
        message of ``binding``'s channel (``chunk``: the chunk's offset, compression, length
        and uncompressed size; offset and length: the message record's in it). Raises
        ``binding.errors`` on a payload that does not decode or fit. ``generated``: one
        function of the channel's parse, time, columns and blob (:meth:`_generated`); else
        the general path it is tested against."""
        if generated:
            return self._generated(binding)
        fill, missing = self._plans.get(id(binding)) or self._plan(binding)
        parse, time, blob, cols = binding.parse, binding.time, binding.blob, self.cols

        if blob is None and time is None and not missing:

            def write(payload, t_log, _t_pub, _chunk, _offset, _length) -> None:
                fill(parse(payload), t_log)

            return write

        def write_any(payload, t_log, t_pub, chunk, offset, length) -> None:
            msg = parse(payload)
            fill(msg, t_log if time is None else time(msg, t_log, t_pub))
            if blob is not None:
                self._blob(binding, msg, blob(msg), payload, (*chunk, offset, length))
            if missing:
                n = len(cols["t"])
                for values in missing:
                    values.extend([None] * (n - len(values)))

        return write_any

    def _generated(self, binding: Binding) -> Callable[..., None]:
        """The writer as one generated function: the parse (a protobuf payload into this
        channel's reused message, or a fresh one when it is large), then per row one append
        per column, reading attribute paths inline (``m.accel_x``, an enum's name, a unit)
        and calling the column's getter otherwise; then the blob and the nulls, as
        :meth:`writer`'s general path does."""
        cols, missing = self.cols, self._missing(binding)
        scope: dict[str, Any] = {
            "T": cols["t"].append, "TL": cols["t"], "R": binding.rows, "P": binding.parse,
            "TIME": binding.time, "BLOB": self._blob, "BG": binding.blob, "B": binding,
            "MISSING": missing,
        }  # fmt: skip
        body = ["def write(p, t_log, t_pub, chunk, offset, length):"]
        cls = binding.codec.message_class
        if cls is not None:  # see Codec.parser
            scope |= {"NEW": cls.FromString, "CLS": cls, "RENEW": codecs.REUSES, "K": codecs.REUSES}
            scope |= {"M": (msg := cls()), "PARSE": msg.ParseFromString}
            body += [
                "    global K, M, PARSE",
                f"    if len(p) > {codecs.LARGE_PAYLOAD}:",
                "        m = NEW(p)",
                "    else:",
                "        K -= 1",
                "        if not K:",
                "            K, M = RENEW, CLS()",
                "            PARSE = M.ParseFromString",
                "        PARSE(p)",
                "        m = M",
            ]
        else:
            body.append("    m = P(p)")
        body.append("    t = t_log" if binding.time is None else "    t = TIME(m, t_log, t_pub)")
        pad, var = "    ", "m"
        if binding.rows is not None:
            rows = binding.sources.get(binding.rows, ("R({e})", {}))[0].format(e="m")
            body.append(f"    for e in {rows} or ():")
            pad, var = "        ", "e"
        body.append(f"{pad}T(t)")
        for k, (name, get) in enumerate(binding.columns):
            expr, names = binding.sources.get(get) or (f"G{k}({{e}})", {"G": get})
            scope |= {f"{n}{k}": value for n, value in names.items()}
            scope[f"A{k}"] = cols[name].append
            body.append(f"{pad}A{k}({expr.format(e=var, k=k)})")
        if binding.blob is not None:
            body.append("    BLOB(B, m, BG(m), p, (*chunk, offset, length))")
        if missing:
            body.append("    n = len(TL)")
            body.append("    for values in MISSING:")
            body.append("        values.extend([None] * (n - len(values)))")
        exec(_compiled("\n".join(body), f"<writer of {binding.topic}>"), scope)  # noqa: S102
        return scope["write"]

    def add(
        self, binding: Binding, payload: memoryview, t_log: int, t_pub: int, loc: tuple
    ) -> None:
        """The rows of one message (``loc``: chunk offset, compression, length, size,
        message offset and length)."""
        self.writer(binding)(payload, t_log, t_pub, loc[:4], *loc[4:])

    def _blob(self, binding: Binding, msg: Any, data: Any, payload: memoryview, loc: tuple):
        """The derived columns of a frame or a scan, and where its bytes lie."""
        c = self.cols
        encoding = ""
        if isinstance(data, str):  # JSON: base64 text
            text, encoding = data.encode(), "base64"
            data = base64.b64decode(text)
        else:
            text = data = bytes(data or b"")
        names, derive = DERIVED[binding.table]
        for name, value in zip(names, derive(self, binding, msg, data), strict=True):
            c[name].append(value)
        found = _locate(payload, text)
        if found < 0:  # JSON that escapes its base64 ("\\/"): no byte range to read back
            raise ValueError("the blob's bytes are not found as such in their message")
        at = _MESSAGE_HEADER_BYTES + found
        for name, value in zip(LOCATOR_COLUMNS, (*loc, at, len(text), encoding), strict=True):
            c[name].append(value)


def _frame_columns(rows: TableRows, binding: Binding, msg: Any, image: bytes) -> tuple:
    """Camera, seq, format, the bytes' size, hash and validity, and the image's size (raw:
    its encoding, row step and byte order, checked against its bytes: a raw frame that does
    not fit them raises ValueError, an undecodable message)."""
    given = binding.inputs
    head = (binding.sensor_of(msg), len(rows.cols["seq"]))
    if "pixel_encoding" not in given:  # an image file: its size from its header
        fmt = given["format"](msg) if "format" in given else None
        valid, width, height = jpeg_header(image)
        return *head, fmt, len(image), sha256_bytes(image), valid, width, height, None, None, None
    width, height, encoding, step = (given[c](msg) for c in RAW_FRAME[:4])
    big_endian = bool(given["big_endian"](msg)) if "big_endian" in given else None
    raw_layout(encoding, width, height, step, len(image))
    size = (int(width), int(height), encoding, int(step), big_endian)
    return *head, RAW, len(image), sha256_bytes(image), True, *size


_POINT_TYPES = {7: "f4", 8: "f8"}
"""Point field types read for statistics: FLOAT32 and FLOAT64 (the same numbers in ROS
PointField and Foxglove PackedElementField), in the cloud's byte order."""


def _scan_columns(rows: TableRows, binding: Binding, msg: Any, data: bytes) -> tuple:
    """Sensor, seq, points, point step, range (m) and intensity min/max/mean of a scan."""
    import numpy as np

    step = int(binding.inputs["point_step"](msg) or 0)
    n = len(data) // step if step > 0 else 0
    order = ">" if binding.inputs.get("big_endian", lambda _m: False)(msg) else "<"
    fields = {}
    for f in binding.inputs.get("fields", lambda _m: [])(msg) or []:
        kind = _part(f, "datatype") if _part(f, "datatype") is not None else _part(f, "type")
        dtype = order + _POINT_TYPES[kind] if kind in _POINT_TYPES else None
        fields[_part(f, "name")] = (int(_part(f, "offset") or 0), dtype)
    points = np.frombuffer(data, np.uint8, n * step).reshape(n, step) if n else None

    def column(name: str):
        offset, dtype = fields.get(name, (0, None))
        if points is None or dtype is None or offset + np.dtype(dtype).itemsize > step:
            return None
        values = points[:, offset : offset + np.dtype(dtype).itemsize].copy().view(dtype)
        values = values.ravel().astype(np.float64)
        return values[np.isfinite(values)]

    def stats(values) -> tuple:
        if values is None or not len(values):
            return (None, None, None)
        return float(values.min()), float(values.max()), float(values.mean())

    xyz = [column(a) for a in "xyz"]
    ranges = None
    if all(v is not None for v in xyz) and len({len(v) for v in xyz}) == 1:
        ranges = np.sqrt(xyz[0] ** 2 + xyz[1] ** 2 + xyz[2] ** 2)
    sensor = binding.sensor_of(msg)
    return (sensor, len(rows.cols["seq"]), n, step, *stats(ranges), *stats(column("intensity")))


DERIVED: dict[str, tuple[tuple[str, ...], Callable[..., tuple]]] = {
    "frames": (
        ("camera", "seq", "format", "jpeg_bytes", "jpeg_sha256", "jpeg_valid", *RAW_FRAME),
        _frame_columns,
    ),
    "lidar_scans": (
        ("sensor", "seq", "points", "point_step", "range_min_m", "range_max_m", "range_mean_m")
        + ("intensity_min", "intensity_max", "intensity_mean"),
        _scan_columns,
    ),
}
"""Per blob table: the columns ingest derives from the bytes and the message, and how."""
BLOB_INPUTS = {
    "frames": ("data", "format", *RAW_FRAME),
    "lidar_scans": ("data", "point_step", "fields", "big_endian"),
}
"""Adapter columns that are inputs of a blob's derivation rather than columns of the table."""
LOCATOR_COLUMNS = (
    "chunk_offset", "chunk_compression", "chunk_length", "chunk_uncompressed_size",
    "message_offset", "message_length", "data_offset", "data_length", "data_encoding",
)  # fmt: skip


def _locate(payload: memoryview, data: bytes) -> int:
    """Where ``data`` (a field's bytes) lies in ``payload``: at its end (a ROS image), else
    found by its first bytes and checked whole (protobuf puts fields after it)."""
    n = len(data)
    if not n:
        return 0
    if payload[len(payload) - n :] == data:
        return len(payload) - n
    raw = bytes(payload)
    at = raw.find(data[:32])
    while at >= 0 and raw[at : at + n] != data:
        at = raw.find(data[:32], at + 1)
    return at

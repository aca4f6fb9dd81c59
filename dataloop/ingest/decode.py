"""Decode one drive log into columnar tables in a single streaming pass.

The pass hashes every byte (to check the manifest's SHA-256), validates chunk CRCs, maps each
channel to its table and decodes messages per chunk. A channel that no table maps (another
schema, another encoding, a topic outside the contract) is kept in the raw log and listed with
its message count; it is never on its own a reason to quarantine a drive. It reads top-level
records with the ``mcap`` library and parses the records inside each chunk with a tight
``struct`` loop: the library's per-message objects cost more than the decoding itself
(benchmarks/ingest.py).

A log that ends early (no footer, a partial chunk) keeps every complete chunk, as
``mcap recover`` does, and says so in ``DecodedLog.truncated``.
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections import Counter
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any, BinaryIO

import lz4.frame
import pyarrow as pa
import zstandard
from google.protobuf.message import DecodeError as ProtobufDecodeError
from mcap.data_stream import ReadDataStream
from mcap.exceptions import EndOfFile, McapError
from mcap.records import Channel, Chunk, Message, Metadata, Schema

from dataloop.fleet import contract, schemas
from dataloop.ingest.jpeg import jpeg_header
from dataloop.ingest.tables import SCHEMAS
from dataloop.lake.hashing import HashingReader, sha256_bytes

DECODER_VERSION = "4"
"""Bump when decoding changes what lands in the tables: every drive is then re-decoded."""

MAX_RECORD_BYTES = 64 * 1024 * 1024
"""Largest record accepted; a hostile length field cannot make us allocate more. The fleet
writes 1 MiB chunks; a camera frame is well under 1 MiB."""
MAX_CHUNK_BYTES = 64 * 1024 * 1024
"""Largest uncompressed chunk: a chunk that claims more is rejected before inflating it, and
one that inflates past what it claims is stopped there (a decompression bomb)."""
MAX_METADATA_BYTES = 64 * 1024
"""Largest drive metadata record (it is copied into the drive record)."""
MIN_TIME_NS, MAX_TIME_NS = 946_684_800 * 10**9, 4_102_444_800 * 10**9
"""Message times outside 2000-01-01 .. 2100-01-01 UTC: an unset vehicle clock or a hostile
value (uint64 times beyond int64 cannot even be stored)."""

_OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE = 0x03, 0x04, 0x05
_RECORD_HEADER = struct.Struct("<BQ")
_MESSAGE_HEADER = struct.Struct("<HIQQ")  # channel id, sequence, log time, publish time
_LOCAL = threading.local()


def _zstd() -> zstandard.ZstdDecompressor:
    """This thread's decompressor: a ZstdDecompressor must not be used by two threads at
    once (ingest decodes drives in parallel threads; sharing one corrupts output)."""
    if not hasattr(_LOCAL, "zstd"):
        _LOCAL.zstd = zstandard.ZstdDecompressor()
    return _LOCAL.zstd


class DecodeError(Exception):
    """The log cannot be decoded; ``code`` is the machine-readable quarantine reason."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass
class DecodedLog:
    tables: dict[str, pa.Table]
    sha256: str
    size: int
    truncated: bool = False
    truncation_detail: str = ""
    chunks: int = 0
    messages: Counter = field(default_factory=Counter)
    unmapped: list[dict[str, Any]] = field(default_factory=list)
    """Channels no table maps: topic, schema, schema and message encodings, messages."""
    drive_metadata: dict[str, str] = field(default_factory=dict)
    start_ns: int | None = None
    end_ns: int | None = None


def _enum_lookup(enum: str) -> list[str]:
    return schemas.enum_names(enum)


_GEARS = _enum_lookup("Gear")
_TURNS = _enum_lookup("TurnSignal")
_CLASSES = _enum_lookup("ObjectClass")
_EVENTS = _enum_lookup("EventType")


def _name(names: list[str], value: int) -> str:
    return names[value] if 0 <= value < len(names) else "unknown"


class _Columns:
    """Column lists for one table, filled message by message."""

    def __init__(self, table: str):
        self.schema = SCHEMAS[table]
        self.cols: dict[str, list[Any]] = {f.name: [] for f in self.schema}

    def to_table(self, vehicle: str, drive: str) -> pa.Table:
        n = len(self.cols["t"])
        self.cols["vehicle_id"] = [vehicle] * n
        self.cols["drive_id"] = [drive] * n
        return pa.Table.from_pydict(self.cols, schema=self.schema)


def _undecodable(spec: contract.ChannelSpec, loc: tuple, err: Exception) -> DecodeError:
    chunk_offset, compression, chunk_length, _size, offset, length = loc
    unchunked = not compression and offset == 0 and chunk_length == length  # see _walk_records
    where = (
        f"message at byte {chunk_offset}"
        if unchunked
        else f"message at byte {offset} of the {compression or 'uncompressed'} chunk at byte "
        f"{chunk_offset}"
    )
    return DecodeError(
        "undecodable_message",
        f"topic {spec.topic!r}: {where} does not decode as {spec.schema}: {err}",
    )


class _Decoder:
    """Per-table decode of one message payload into its columns."""

    def __init__(self) -> None:
        self.columns = {name: _Columns(name) for name in SCHEMAS}
        self._msgs = {name: cls() for name, cls in schemas.MESSAGE_CLASSES.items()}

    def decode(self, spec: contract.ChannelSpec, t: int, data: memoryview, loc: tuple) -> None:
        msg = self._msgs[spec.schema]
        try:
            msg.ParseFromString(data)
        except ProtobufDecodeError as err:
            raise _undecodable(spec, loc, err) from err
        c = self.columns[spec.table].cols
        if spec.table == "imu":
            c["t"].append(t)
            c["accel_x"].append(msg.accel_x)
            c["accel_y"].append(msg.accel_y)
            c["accel_z"].append(msg.accel_z)
            c["gyro_x"].append(msg.gyro_x)
            c["gyro_y"].append(msg.gyro_y)
            c["gyro_z"].append(msg.gyro_z)
        elif spec.table == "vehicle_state":
            c["t"].append(t)
            c["speed_mps"].append(msg.speed_mps)
            c["steering_angle_rad"].append(msg.steering_angle_rad)
            c["accelerator"].append(msg.accelerator)
            c["brake"].append(msg.brake)
            c["yaw_rate_radps"].append(msg.yaw_rate_radps)
            c["gear"].append(_name(_GEARS, msg.gear))
            c["turn_signal"].append(_name(_TURNS, msg.turn_signal))
        elif spec.table == "frames":
            jpeg = msg.data
            c["t"].append(t)
            c["seq"].append(len(c["seq"]))
            c["format"].append(msg.format)
            c["jpeg_bytes"].append(len(jpeg))
            c["jpeg_sha256"].append(sha256_bytes(jpeg))
            valid, width, height = jpeg_header(jpeg)
            c["jpeg_valid"].append(valid)
            c["width"].append(width)
            c["height"].append(height)
            chunk_offset, compression, chunk_length, uncompressed, offset, length = loc
            c["chunk_offset"].append(chunk_offset)
            c["chunk_compression"].append(compression)
            c["chunk_length"].append(chunk_length)
            c["chunk_uncompressed_size"].append(uncompressed)
            c["message_offset"].append(offset)
            c["message_length"].append(length)
        elif spec.table == "gnss":
            c["t"].append(t)
            c["latitude"].append(msg.latitude)
            c["longitude"].append(msg.longitude)
            c["altitude"].append(msg.altitude)
            cov = msg.position_covariance
            c["horizontal_sigma_m"].append(
                (max(cov[0], cov[4]) ** 0.5) if len(cov) == 9 else float("nan")
            )
        elif spec.table == "objects":
            for o in msg.objects:
                c["t"].append(t)
                c["object_id"].append(o.id)
                c["object_class"].append(_name(_CLASSES, o.object_class))
                c["x"].append(o.x)
                c["y"].append(o.y)
                c["vx"].append(o.vx)
                c["vy"].append(o.vy)
                c["length"].append(o.length)
                c["width"].append(o.width)
                c["height"].append(o.height)
                c["heading"].append(o.heading)
                c["confidence"].append(o.confidence)
        elif spec.table == "events":
            c["t"].append(t)
            c["type"].append(_name(_EVENTS, msg.type))
            c["detail"].append(msg.detail)
        elif spec.table == "lanes":
            c["t"].append(t)
            c["lateral_offset_m"].append(msg.lateral_offset_m)
            c["heading_error_rad"].append(msg.heading_error_rad)
            c["lane_width_m"].append(msg.lane_width_m)
            c["confidence"].append(msg.confidence)


class _LogState:
    def __init__(self) -> None:
        self.schemas: dict[int, Schema] = {}
        self.channels: dict[int, contract.ChannelSpec | None] = {}
        self.unmapped: dict[int, dict[str, Any]] = {}

    def add_schema(self, schema: Schema) -> None:
        if schema.id != 0:
            self.schemas[schema.id] = schema

    def add_channel(self, channel: Channel) -> None:
        if channel.id in self.channels:
            return
        schema = self.schemas.get(channel.schema_id)
        spec = contract.BY_TOPIC.get(channel.topic)
        if (
            spec is None
            or schema is None
            or schema.name != spec.schema
            or schema.encoding != "protobuf"
            or channel.message_encoding != "protobuf"
        ):
            self.unmapped[channel.id] = {
                "topic": channel.topic,
                "schema": schema.name if schema else "",
                "schema_encoding": schema.encoding if schema else "",
                "message_encoding": channel.message_encoding,
                "messages": 0,
            }
            spec = None
        self.channels[channel.id] = spec


def _chunk_records(chunk: Chunk) -> bytes:
    declared = chunk.uncompressed_size
    if declared > MAX_CHUNK_BYTES:
        raise DecodeError(
            "too_large", f"chunk claims {declared} uncompressed bytes, over {MAX_CHUNK_BYTES}"
        )
    # Inflate at most one byte past the declared size, whatever the frame header claims.
    if chunk.compression == "zstd":
        if zstandard.frame_content_size(chunk.data) == declared:  # as writers record it
            data = _zstd().decompress(chunk.data, max_output_size=declared)  # 4x faster
        else:
            data = _zstd().stream_reader(BytesIO(chunk.data)).read(declared + 1)
    elif chunk.compression == "lz4":
        data = lz4.frame.LZ4FrameDecompressor().decompress(chunk.data, max_length=declared + 1)
    elif chunk.compression == "":
        data = chunk.data
    else:
        raise DecodeError("corrupt", f"unsupported chunk compression {chunk.compression!r}")
    if len(data) > declared:
        raise DecodeError(
            "decompression_bomb", f"chunk inflates past the {declared} bytes it declares"
        )
    if len(data) != chunk.uncompressed_size:
        raise DecodeError("corrupt", "chunk decompressed to the wrong size")
    if chunk.uncompressed_crc != 0 and zlib.crc32(data) != chunk.uncompressed_crc:
        raise DecodeError("crc_mismatch", "chunk CRC does not match its records")
    return data


def _decode_chunk(
    chunk: Chunk, chunk_offset: int, state: _LogState, decoder: _Decoder, log: DecodedLog
) -> None:
    data = _chunk_records(chunk)
    view = memoryview(data)
    n = len(data)
    pos = 0
    unpack_header = _RECORD_HEADER.unpack_from
    unpack_message = _MESSAGE_HEADER.unpack_from
    channels = state.channels
    unmapped = state.unmapped
    counts = log.messages
    while pos < n:
        if pos + 9 > n:
            raise DecodeError("corrupt", "record header runs past the end of its chunk")
        op, length = unpack_header(data, pos)
        pos += 9
        end = pos + length
        if end > n:
            raise DecodeError("corrupt", "record runs past the end of its chunk")
        if op == _OP_MESSAGE:
            channel_id, _seq, log_time, _pub = unpack_message(data, pos)
            if channel_id not in channels:
                raise DecodeError("corrupt", f"message on unknown channel {channel_id}")
            spec = channels[channel_id]
            if spec is None:
                unmapped[channel_id]["messages"] += 1
            else:
                counts[spec.topic] += 1
                loc = (
                    chunk_offset,
                    chunk.compression,
                    len(chunk.data),
                    chunk.uncompressed_size,
                    pos - 9,
                    length + 9,
                )
                decoder.decode(spec, log_time, view[pos + 22 : end], loc)
        elif op == _OP_SCHEMA:
            state.add_schema(Schema.read(ReadDataStream(BytesIO(data[pos:end]))))
        elif op == _OP_CHANNEL:
            state.add_channel(Channel.read(ReadDataStream(BytesIO(data[pos:end]))))
        pos = end
    log.chunks += 1
    start, stop = chunk.message_start_time, chunk.message_end_time
    if counts:
        log.start_ns = start if log.start_ns is None else min(log.start_ns, start)
        log.end_ns = stop if log.end_ns is None else max(log.end_ns, stop)


_MAGIC = b"\x89MCAP0\r\n"
_OP_CHUNK, _OP_DATA_END, _OP_FOOTER, _OP_METADATA = 0x06, 0x0F, 0x02, 0x0C
_CHUNK_HEADER = struct.Struct("<QQQI")  # start time, end time, uncompressed size, crc


def _parse(record: bytes, cls: Any) -> Any:
    return cls.read(ReadDataStream(BytesIO(record)))


def _read_chunk(payload: bytes) -> Chunk:
    start, stop, size, crc = _CHUNK_HEADER.unpack_from(payload, 0)
    (clen,) = struct.unpack_from("<I", payload, 28)
    compression = payload[32 : 32 + clen].decode()
    (dlen,) = struct.unpack_from("<Q", payload, 32 + clen)
    data = payload[40 + clen : 40 + clen + dlen]
    if len(data) != dlen:
        raise DecodeError("corrupt", "chunk data length does not match its record")
    return Chunk(compression, data, stop, start, crc, size)


def _walk_records(reader: HashingReader, state: _LogState, decoder: _Decoder, log: DecodedLog):
    """Read top-level records until the footer. Message indexes and the summary's indexes are
    hashed but not parsed: ingest streams the whole file anyway."""
    magic = reader.read(8)
    if magic != _MAGIC:
        if len(magic) < 8 and _MAGIC.startswith(magic):
            raise EndOfFile()
        raise DecodeError("not_mcap", "the file does not start with the MCAP magic")
    data_crc = zlib.crc32(_MAGIC)
    in_data = True
    while True:
        header = reader.read(9)
        if len(header) < 9:
            raise EndOfFile()
        op, length = _RECORD_HEADER.unpack(header)
        if length > MAX_RECORD_BYTES:
            raise DecodeError("too_large", f"record of {length} bytes, over {MAX_RECORD_BYTES}")
        payload = reader.read(length)
        if len(payload) < length:
            raise EndOfFile()
        if op == _OP_DATA_END:
            (expected,) = struct.unpack_from("<I", payload, 0)
            if expected and expected != data_crc:
                raise DecodeError("crc_mismatch", "data section CRC does not match")
            in_data = False
        elif in_data:
            data_crc = zlib.crc32(payload, zlib.crc32(header, data_crc))
        if op == _OP_CHUNK:
            chunk = _read_chunk(payload)
            chunk_offset = reader.bytes_read - length + 40 + len(chunk.compression)
            _decode_chunk(chunk, chunk_offset, state, decoder, log)
        elif op == _OP_SCHEMA:
            state.add_schema(_parse(payload, Schema))
        elif op == _OP_CHANNEL:
            state.add_channel(_parse(payload, Channel))
        elif op == _OP_MESSAGE:
            msg = Message.read(ReadDataStream(BytesIO(payload)), length)
            if msg.channel_id not in state.channels:
                raise DecodeError("corrupt", f"message on unknown channel {msg.channel_id}")
            spec = state.channels[msg.channel_id]
            if spec is None:
                state.unmapped[msg.channel_id]["messages"] += 1
            else:
                log.messages[spec.topic] += 1
                # An unchunked message is its own uncompressed "chunk" in the file.
                record_start = reader.bytes_read - length - 9
                loc = (record_start, "", length + 9, length + 9, 0, length + 9)
                decoder.decode(spec, msg.log_time, memoryview(msg.data), loc)
        elif op == _OP_METADATA:
            if length > MAX_METADATA_BYTES:
                raise DecodeError(
                    "too_large", f"metadata record of {length} bytes, over {MAX_METADATA_BYTES}"
                )
            meta = _parse(payload, Metadata)
            if meta.name == contract.DRIVE_METADATA:
                log.drive_metadata = dict(meta.metadata)
        elif op == _OP_FOOTER:
            if reader.read(8) != _MAGIC:
                raise EndOfFile()
            return


def decode_log(stream: BinaryIO, *, vehicle: str, drive: str) -> DecodedLog:
    """Decode a drive log from a stream; raises DecodeError with a quarantine reason."""
    reader = HashingReader(stream)
    state = _LogState()
    decoder = _Decoder()
    log = DecodedLog(tables={}, sha256="", size=0)
    try:
        _walk_records(reader, state, decoder, log)
    except EndOfFile:
        if reader.bytes_read <= 8:
            raise DecodeError("truncated", "the file ends inside the MCAP magic") from None
        log.truncated = True
        log.truncation_detail = (
            f"log ends at byte {reader.bytes_read} without a complete footer; "
            f"recovered {log.chunks} complete chunks"
        )
    except DecodeError:
        raise
    except (McapError, struct.error, UnicodeDecodeError, ValueError, zstandard.ZstdError) as err:
        raise DecodeError("corrupt", f"{type(err).__name__}: {err}") from err
    reader.drain()
    log.sha256, log.size = reader.hexdigest(), reader.bytes_read
    log.unmapped = sorted(state.unmapped.values(), key=lambda c: c["topic"])
    present = {spec.topic for spec in state.channels.values() if spec is not None}
    missing = [
        c.topic
        for c in contract.CHANNELS
        if c.required and (c.topic not in present or log.messages[c.topic] == 0)
    ]
    if missing:
        code = "truncated" if log.truncated else "missing_channel"
        detail = f"required channels without messages: {', '.join(missing)}"
        if log.truncated:
            detail = f"{log.truncation_detail}; {detail}"
        raise DecodeError(code, detail)
    for name, cols in decoder.columns.items():
        times = cols.cols["t"]
        if times and not (min(times) >= MIN_TIME_NS and max(times) <= MAX_TIME_NS):
            bad = next(t for t in times if not MIN_TIME_NS <= t <= MAX_TIME_NS)
            raise DecodeError(
                "invalid_timestamp", f"{name} message at {bad} ns, outside 2000-01-01..2100-01-01"
            )
    log.tables = {name: cols.to_table(vehicle, drive) for name, cols in decoder.columns.items()}
    return log

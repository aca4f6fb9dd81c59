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
from collections.abc import Callable
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any, BinaryIO

import lz4.frame
import pyarrow as pa
import zstandard
from mcap.data_stream import ReadDataStream
from mcap.exceptions import EndOfFile, McapError
from mcap.records import Channel, Chunk, Message, Metadata, Schema

from dataloop.fleet import contract
from dataloop.ingest import adapters as A
from dataloop.ingest.adapters.codecs import CodecError, codec
from dataloop.ingest.adapters.extract import Binding, TableRows, bind
from dataloop.ingest.adapters.fields import PathError
from dataloop.ingest.tables import CORE_TABLES, SCHEMAS
from dataloop.lake.hashing import HashingReader

DECODER_VERSION = "7"
"""Bump when decoding changes what lands in the tables: every drive is then re-decoded (so
does an edit of the adapters: see :func:`decoder_version`). 6: raw camera images; 7: no
table is required at ingest (the fleet profile's are checked by quality), and imu and gnss
name their sensor (several IMUs or receivers in one log)."""

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


def decoder_version(adapters: A.AdapterSet | None = None) -> str:
    """What a drive record's decoding is compared with: the decoder and the adapters' hash."""
    adapters = adapters or A.installed().get()
    return f"{DECODER_VERSION}.adapters-{adapters.digest}"


def _undecodable(binding: Binding, loc: tuple, err: Exception) -> DecodeError:
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
        f"topic {binding.topic!r}: {where} does not decode as {binding.adapter.schema} "
        f"({binding.codec.encoding}): {type(err).__name__}: {err}",
    )


class _LogState:
    """The log's schemas and channels so far, each channel bound to its adapter (or listed
    as unmapped), and the rows of every table."""

    def __init__(self, adapters: A.AdapterSet) -> None:
        self.adapters = adapters
        self.schemas: dict[int, Schema] = {}
        self.channels: dict[int, Binding | None] = {}
        self.unmapped: dict[int, dict[str, Any]] = {}
        self.tables: dict[str, TableRows] = {}
        self.writers: dict[int, Callable[..., None]] = {}

    def add_schema(self, schema: Schema) -> None:
        if schema.id != 0:
            self.schemas[schema.id] = schema

    def add_channel(self, channel: Channel) -> None:
        if channel.id in self.channels:
            return
        schema = self.schemas.get(channel.schema_id)
        adapter = None
        if schema is not None:
            adapter = self.adapters.find(channel.topic, schema.name, channel.message_encoding)
        if adapter is None or schema is None:
            self.unmapped[channel.id] = {
                "topic": channel.topic,
                "schema": schema.name if schema else "",
                "schema_encoding": schema.encoding if schema else "",
                "message_encoding": channel.message_encoding,
                "messages": 0,
            }
            self.channels[channel.id] = None
            return
        try:
            found = codec(channel.message_encoding, schema.encoding, schema.name, schema.data)
            text = schema.data.decode(errors="replace") if schema.encoding == "ros2msg" else ""
            binding = bind(adapter, found, channel.topic, text)
        except PathError as err:
            raise DecodeError("adapter_mismatch", f"topic {channel.topic!r}: {err}") from err
        except (CodecError, RecursionError, ValueError, TypeError, KeyError) as err:
            # a hostile or broken definition (one that contains itself, say)
            detail = f"topic {channel.topic!r}: {type(err).__name__}: {err}"[:1000]
            raise DecodeError("undecodable_schema", detail) from err
        if binding.table not in self.tables:
            self.tables[binding.table] = TableRows([f.name for f in SCHEMAS[binding.table]][2:])
        self.channels[channel.id] = binding
        self.writers[channel.id] = self.tables[binding.table].writer(binding)


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


def _decode_chunk(chunk: Chunk, chunk_offset: int, state: _LogState, log: DecodedLog) -> None:
    data = _chunk_records(chunk)
    view = memoryview(data)
    n = len(data)
    pos = 0
    unpack_header = _RECORD_HEADER.unpack_from
    unpack_message = _MESSAGE_HEADER.unpack_from
    writers = state.writers
    unmapped = state.unmapped
    counts = log.messages
    fed: list[int] = []  # the channel of each mapped message, counted per topic at the end
    seen = fed.append
    where = (chunk_offset, chunk.compression, len(chunk.data), chunk.uncompressed_size)
    try:
        while pos < n:
            if pos + 9 > n:
                raise DecodeError("corrupt", "record header runs past the end of its chunk")
            op, length = unpack_header(data, pos)
            pos += 9
            end = pos + length
            if end > n:
                raise DecodeError("corrupt", "record runs past the end of its chunk")
            if op == _OP_MESSAGE:
                channel_id, _seq, log_time, pub = unpack_message(data, pos)
                write = writers.get(channel_id)
                if write is not None:
                    seen(channel_id)
                    try:
                        write(view[pos + 22 : end], log_time, pub, where, pos - 9, length + 9)
                    except Exception as err:
                        binding = state.channels[channel_id]
                        if not isinstance(err, binding.errors):
                            raise
                        loc = (*where, pos - 9, length + 9)
                        raise _undecodable(binding, loc, err) from err
                elif channel_id in unmapped:
                    unmapped[channel_id]["messages"] += 1
                else:
                    raise DecodeError("corrupt", f"message on unknown channel {channel_id}")
            elif op == _OP_SCHEMA:
                state.add_schema(Schema.read(ReadDataStream(BytesIO(data[pos:end]))))
            elif op == _OP_CHANNEL:
                state.add_channel(Channel.read(ReadDataStream(BytesIO(data[pos:end]))))
            pos = end
    finally:  # also when a record stops the chunk: its messages so far were decoded
        for channel_id, k in Counter(fed).items():
            counts[state.channels[channel_id].topic] += k  # type: ignore[union-attr]
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


def _walk_records(reader: HashingReader, state: _LogState, log: DecodedLog):
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
            _decode_chunk(chunk, chunk_offset, state, log)
        elif op == _OP_SCHEMA:
            state.add_schema(_parse(payload, Schema))
        elif op == _OP_CHANNEL:
            state.add_channel(_parse(payload, Channel))
        elif op == _OP_MESSAGE:
            msg = Message.read(ReadDataStream(BytesIO(payload)), length)
            if msg.channel_id not in state.channels:
                raise DecodeError("corrupt", f"message on unknown channel {msg.channel_id}")
            binding = state.channels[msg.channel_id]
            if binding is None:
                state.unmapped[msg.channel_id]["messages"] += 1
            else:
                log.messages[binding.topic] += 1
                # An unchunked message is its own uncompressed "chunk" in the file.
                where = (reader.bytes_read - length - 9, "", length + 9, length + 9)
                try:
                    state.writers[msg.channel_id](
                        memoryview(msg.data), msg.log_time, msg.publish_time, where, 0, length + 9
                    )
                except binding.errors as err:
                    raise _undecodable(binding, (*where, 0, length + 9), err) from err
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


def decode_log(
    stream: BinaryIO, *, vehicle: str, drive: str, adapters: A.AdapterSet | None = None
) -> DecodedLog:
    """Decode a drive log from a stream with ``adapters`` (default: the rules folder's);
    raises DecodeError with a quarantine reason (and ``RulesError`` when the rules folder's
    adapters do not load: no drive is to blame for that)."""
    reader = HashingReader(stream)
    state = _LogState(adapters or A.installed().get())
    log = DecodedLog(tables={}, sha256="", size=0)
    try:
        _walk_records(reader, state, log)
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
    for name, rows in state.tables.items():
        times = rows.cols["t"]
        if times and not (min(times) >= MIN_TIME_NS and max(times) <= MAX_TIME_NS):
            bad = next(t for t in times if not MIN_TIME_NS <= t <= MAX_TIME_NS)
            raise DecodeError(
                "invalid_timestamp", f"{name} message at {bad} ns, outside 2000-01-01..2100-01-01"
            )
    ids = {"vehicle_id": vehicle, "drive_id": drive}
    for name in (*CORE_TABLES, *(t for t in SCHEMAS if t in state.tables and t not in CORE_TABLES)):
        cols = state.tables[name].cols if name in state.tables else {}
        n = len(cols.get("t", ()))
        data = {
            f.name: [ids[f.name]] * n if f.name in ids else cols.get(f.name, [])
            for f in SCHEMAS[name]
        }
        try:
            for f in SCHEMAS[name]:
                if pa.types.is_list(f.type):  # a decoder's repeated container, as a list
                    data[f.name] = [None if v is None else list(v) for v in data[f.name]]
            log.tables[name] = pa.Table.from_pydict(data, schema=SCHEMAS[name])
        except (pa.ArrowException, TypeError, ValueError) as err:  # "abc" as a latitude
            detail = f"{name}: a value does not fit its column: {err}"[:1000]
            raise DecodeError("undecodable_message", detail) from err
    if log.truncated and not any(log.messages.values()):
        raise DecodeError("truncated", f"{log.truncation_detail}; no message recovered")
    return log

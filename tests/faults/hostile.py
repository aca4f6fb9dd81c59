"""A corpus of hostile uploads beyond tests/test_bad_logs.py, and a measurement of what
ingesting each costs in peak memory.

``python -m tests.faults.hostile CORPUS_DIR LAKE_DIR`` ingests a corpus that ``build`` wrote
(in another process, so that building it leaves no mark on this one's memory), upload by
upload, and prints one JSON line per upload: name, expected and actual quarantine code,
detail and the process's peak RSS so far (VmHWM, MiB; the kernel's high-water mark cannot be
reset everywhere, so each line is the peak over that upload and all before it).
"""

from __future__ import annotations

import io
import json
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import lz4.frame
import zstandard

MAGIC = b"\x89MCAP0\r\n"
BOMB_BYTES = 512 * 1024 * 1024
"""What each compression bomb inflates to; a decoder that inflated it would show it in RSS."""


@dataclass(frozen=True)
class Hostile:
    name: str
    code: str
    """The quarantine reason ingest must give (``ingested``: none, the upload is harmless)."""
    log: Path
    manifest: bytes | Path | None = None
    """Raw manifest bytes (or a file of them) to commit instead of a proper manifest."""


def _record(op: int, payload: bytes) -> bytes:
    return struct.pack("<BQ", op, len(payload)) + payload


def _string(s: str) -> bytes:
    return struct.pack("<I", len(s.encode())) + s.encode()


def _header() -> bytes:
    return MAGIC + _record(0x01, _string("") + _string("hostile"))


def _chunk(data: bytes, compression: str, declared: int) -> bytes:
    payload = struct.pack("<QQQI", 1, 2, declared, 0) + _string(compression)
    return _record(0x06, payload + struct.pack("<Q", len(data)) + data)


def _zstd_bomb(with_size: bool) -> bytes:
    """zstd frame of BOMB_BYTES zeros, built without holding them in memory."""
    out = io.BytesIO()
    cctx = zstandard.ZstdCompressor(level=1, write_content_size=with_size)
    with cctx.stream_writer(out, size=BOMB_BYTES if with_size else -1, closefd=False) as writer:
        block = bytes(1024 * 1024)
        for _ in range(BOMB_BYTES // len(block)):
            writer.write(block)
    return out.getvalue()


def _lz4_bomb() -> bytes:
    comp = lz4.frame.LZ4FrameCompressor()
    parts = [comp.begin()]
    block = bytes(1024 * 1024)
    parts += [comp.compress(block) for _ in range(BOMB_BYTES // len(block))]
    parts.append(comp.flush())
    return b"".join(parts)


def _nested_json_log(path: Path) -> Path:
    from mcap.writer import Writer

    with path.open("wb") as f:
        w = Writer(f)
        w.start()
        schema = w.register_schema(name="Evil", encoding="jsonschema", data=b"{}")
        channel = w.register_channel(topic="/evil", message_encoding="json", schema_id=schema)
        depth = 2_000_000
        w.add_message(channel, log_time=1, publish_time=1, data=b"[" * depth + b"]" * depth)
        w.finish()
    return path


def _extreme_time_log(path: Path, t: int) -> Path:
    """A well-formed drive log, plus one IMU message at ``t`` ns."""
    import time

    from dataloop.fleet.logwriter import DriveLogWriter

    t0 = time.time_ns()
    with DriveLogWriter(path, vehicle="veh-1", drive=path.stem) as log:
        for k in range(20):
            tk = t0 + k * 10_000_000
            log.imu(tk, (0.0, 0.0, 9.81), (0.0, 0.0, 0.0))
            log.vehicle_state(
                tk,
                speed_mps=1.0,
                steering_angle_rad=0.0,
                accelerator=0.0,
                brake=0.0,
                yaw_rate_radps=0.0,
            )
        log.gnss(t0, 48.1, 11.5, 500.0)
        log.objects(t0, [])
        log.camera(t0, b"\xff\xd8\xff\xe0" + bytes(64) + b"\xff\xd9")
        log.imu(t, (0.0, 0.0, 9.81), (0.0, 0.0, 0.0))
    return path


def build(folder: Path) -> list[Hostile]:
    """Write every hostile upload under ``folder`` (and its list, ``corpus.json``)."""
    cases = _cases(folder)
    rows = []
    for c in cases:
        manifest = c.manifest
        if isinstance(manifest, bytes):
            manifest = folder / f"{c.name}.manifest.json"
            manifest.write_bytes(c.manifest.replace(b"{drive}", c.name.encode()))
        rows.append({"name": c.name, "code": c.code, "log": str(c.log), "manifest": manifest})
    (folder / "corpus.json").write_text(json.dumps(rows, default=str))
    return cases


def _cases(folder: Path) -> list[Hostile]:
    folder.mkdir(parents=True, exist_ok=True)

    def log(name: str, data: bytes) -> Path:
        path = folder / f"{name}.mcap"
        path.write_bytes(data)
        return path

    small = _header() + _record(0x0F, struct.pack("<I", 0))
    good = folder / "carrier.mcap"
    from tests.helpers import write_minimal_log

    write_minimal_log(good, drive="carrier", seconds=0.5)
    manifest = {
        "vehicle": "veh-1",
        "drive": "{drive}",
        "log_key": "raw/date=2026-01-01/vehicle=veh-1/x.mcap",
        "size": good.stat().st_size,
        "sha256": "0" * 64,
        "start": None,
        "end": None,
        "software_version": "1",
        "model_version": "m",
        "trigger": "t",
        "uploaded_at": "2026-01-01T00:00:00+00:00",
    }

    def with_(**changes) -> bytes:
        return json.dumps({**manifest, **changes}).encode()

    depth = 20_000
    return [
        Hostile(
            "zstd-bomb",
            "decompression_bomb",
            log("zstd-bomb", _header() + _chunk(_zstd_bomb(False), "zstd", 4096)),
        ),
        Hostile(
            "zstd-bomb-lying-header",
            "decompression_bomb",
            log("zstd-bomb-lying-header", _header() + _chunk(_zstd_bomb(True), "zstd", 4096)),
        ),
        Hostile(
            "chunk-claims-a-terabyte",
            "too_large",
            log("chunk-claims-a-terabyte", _header() + _chunk(b"x" * 100, "zstd", 1 << 40)),
        ),
        Hostile(
            "lz4-bomb",
            "decompression_bomb",
            log("lz4-bomb", _header() + _chunk(_lz4_bomb(), "lz4", 4096)),
        ),
        Hostile(
            "absurd-record-length",
            "too_large",
            log("absurd-record-length", _header() + struct.pack("<BQ", 0x06, 1 << 62) + b"x"),
        ),
        Hostile(
            "absurd-length-inside-chunk",
            "corrupt",
            log(
                "absurd-length-inside-chunk",
                _header()
                + _chunk(struct.pack("<BQ", 0x05, 1 << 60) + bytes(16), "", 25)
                + small[len(_header()) :],
            ),
        ),
        Hostile(
            "huge-metadata",
            "too_large",
            log(
                "huge-metadata",
                _header()
                + _record(
                    0x0C,
                    _string("drive")
                    + struct.pack("<I", 0)
                    + _string("k")
                    + _string("v" * (8 * 1024 * 1024)),
                ),
            ),
        ),
        Hostile(
            "deeply-nested-json-message",
            "ingested",  # no adapter maps it: its channel is listed, never parsed
            _nested_json_log(folder / "deeply-nested-json-message.mcap"),
        ),
        Hostile(
            "uint64-max-time",
            "invalid_timestamp",
            _extreme_time_log(folder / "uint64-max-time.mcap", 2**64 - 1),
        ),
        Hostile(
            "int64-max-time",
            "invalid_timestamp",
            _extreme_time_log(folder / "int64-max-time.mcap", 2**63 - 1),
        ),
        Hostile(
            "manifest-nested",
            "invalid_manifest",
            good,
            b'{"vehicle": "veh-1", "x": ' + b"[" * depth + b"]" * depth + b"}",
        ),
        Hostile("manifest-wrong-types", "invalid_manifest", good, with_(size="12", trigger=[1])),
        Hostile(
            "manifest-huge-field", "invalid_manifest", good, with_(software_version="v" * 60_000)
        ),
        Hostile("manifest-giant", "invalid_manifest", good, b" " * (256 * 1024 * 1024) + b"{}"),
    ]


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def measure(corpus: Path, lake: Path) -> list[dict]:
    """Commit and ingest every hostile upload; one result per upload."""
    from dataloop.ingest.drive import ingest_upload
    from dataloop.lake.layout import RawKeys
    from dataloop.lake.local import LocalStore
    from tests.helpers import commit_raw, write_minimal_log

    store = LocalStore(lake)
    cases = json.loads((corpus / "corpus.json").read_text())
    warm = write_minimal_log(corpus / "warm-up.mcap", drive="warm-up", seconds=2.0)
    commit_raw(store, warm, vehicle="veh-1", drive="warm-up")
    for case in cases:
        keys = commit_raw(store, Path(case["log"]), vehicle="veh-1", drive=case["name"])
        if case["manifest"] is not None:
            store.delete(keys.manifest)
            with open(case["manifest"], "rb") as f:
                store.put_stream(keys.manifest, f)
    results = []
    for name in ["warm-up", *(c["name"] for c in cases)]:
        keys = RawKeys(
            __import__("datetime").datetime.now(__import__("datetime").UTC).date(), "veh-1", name
        )
        info = store.head(keys.manifest)
        record = ingest_upload(store, info, hour="2026-01-01-00:00")
        reason = (record.get("reasons") or [{}])[0]
        results.append(
            {
                "name": name,
                "expected": next((c["code"] for c in cases if c["name"] == name), "ingested"),
                "status": record["status"],
                "code": reason.get("code", record["status"]),
                "detail": reason.get("detail", ""),
                "unmapped": [u["topic"] for u in record.get("unmapped_topics", [])],
                "peak_rss_mib": round(peak_rss_mib(), 1),
            }
        )
    return results


if __name__ == "__main__":
    for row in measure(Path(sys.argv[1]), Path(sys.argv[2])):
        print(json.dumps(row), flush=True)

"""Ingest one committed upload: decode it into lake tables, or quarantine it with a reason.

Idempotent: a drive already decoded from the same bytes at the same decoder version is skipped.
Nothing is ever overwritten: tables are content-addressed and raw objects are only read. The
drive's ingest section of the ledger is what changes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from dataloop.ingest.decode import DecodedLog, DecodeError, decode_log, decoder_version
from dataloop.ingest.tables import put_table
from dataloop.lake import layout as L
from dataloop.lake import ledger
from dataloop.lake.hashing import sha256_json
from dataloop.lake.manifest import MAX_MANIFEST_BYTES, InvalidManifest, UploadManifest
from dataloop.lake.pointers import read_json, write_json
from dataloop.lake.store import ObjectInfo, ObjectStore

INGESTED, RECOVERED, QUARANTINED = ledger.INGESTED, ledger.RECOVERED, ledger.QUARANTINED
USABLE = ledger.USABLE


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _versioned(record: dict[str, Any]) -> dict[str, Any]:
    """Stamp a record with a content version that ignores when it was written."""
    body = {k: v for k, v in record.items() if k not in ("version", "processed_at")}
    return {**record, "version": sha256_json(body)[:32]}


def quarantine(
    store: ObjectStore,
    manifest: ObjectInfo,
    code: str,
    detail: str,
    *,
    hour: str,
    upload: UploadManifest | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Record why an upload was set aside. The raw objects stay where they are, untouched."""
    parsed = L.parse_raw_key(manifest.key)
    record = _versioned(
        {
            "status": QUARANTINED,
            "reasons": [{"code": code, "detail": detail}],
            "manifest_key": manifest.key,
            "log_key": upload.log_key if upload else None,
            "vehicle": upload.vehicle if upload else (parsed.vehicle if parsed else None),
            "drive": upload.drive if upload else (parsed.drive if parsed else None),
            "sha256": upload.sha256 if upload else None,
            "hour": hour,
            "arrived_at": manifest.last_modified.isoformat(),
            "decoder_version": decoder_version(),
            "processed_at": _now(),
            **extra,
        }
    )
    key = L.quarantine_key(manifest.key)
    existing = read_json(store, key)
    if existing and existing.get("version") == record["version"]:
        return {**existing, "skipped": True}  # same verdict as before: nothing rewritten
    write_json(store, key, record)
    return record


def _identity_problem(log: DecodedLog, upload: UploadManifest) -> str | None:
    meta = log.drive_metadata
    for field in ("vehicle", "drive"):
        claimed = meta.get(field)
        if claimed is not None and claimed != getattr(upload, field):
            return f"log says {field} {claimed!r}, manifest says {getattr(upload, field)!r}"
    return None


def _write_tables(store: ObjectStore, log: DecodedLog, upload: UploadManifest) -> dict:
    return {
        name: put_table(store, name, upload.vehicle, upload.drive, table)
        for name, table in log.tables.items()
    }


def ingest_upload(store: ObjectStore, manifest: ObjectInfo, *, hour: str) -> dict[str, Any]:
    """Ingest the upload committed by ``manifest``; returns its drive record (the drive's
    ingest section of the ledger, or the quarantine record of an upload that does not count)."""
    parsed = L.parse_raw_key(manifest.key)
    try:
        if parsed is None:
            raise L.InvalidId(f"key {manifest.key!r} does not follow the raw layout")
        L.validate_id(parsed.vehicle, "vehicle")
        L.validate_id(parsed.drive, "drive")
    except L.InvalidId as err:
        return quarantine(store, manifest, "invalid_id", str(err), hour=hour)

    try:
        if manifest.size > MAX_MANIFEST_BYTES:  # never read a hostile giant into memory
            raise InvalidManifest(
                f"manifest is {manifest.size} bytes, more than {MAX_MANIFEST_BYTES}"
            )
        upload = UploadManifest.from_json(store.get(manifest.key))
        expected = L.RawKeys(
            datetime.fromisoformat(parsed.day).date(), parsed.vehicle, parsed.drive
        )
        if (upload.vehicle, upload.drive, upload.log_key) != (
            parsed.vehicle,
            parsed.drive,
            expected.log,
        ):
            raise InvalidManifest(
                f"manifest names {upload.vehicle}/{upload.drive} at {upload.log_key}, "
                f"but sits at {manifest.key}"
            )
    except InvalidManifest as err:
        return quarantine(store, manifest, "invalid_manifest", str(err), hour=hour)

    current = ledger.section(store, upload.vehicle, upload.drive, ledger.INGEST)
    if current is not None:
        same_upload = current.get("manifest_key") == manifest.key
        if same_upload and current.get("decoder_version") == decoder_version():
            return {**current, "skipped": True}
        if not same_upload and current.get("status") in USABLE:
            code = "duplicate" if current.get("sha256") == upload.sha256 else "conflict"
            detail = f"drive already ingested from {current['manifest_key']}" + (
                " with the same bytes" if code == "duplicate" else " with different bytes"
            )
            return quarantine(
                store,
                manifest,
                code,
                detail,
                hour=hour,
                upload=upload,
                original=current["manifest_key"],
            )

    def set_aside(code: str, detail: str, **extra: Any) -> dict[str, Any]:
        record = quarantine(store, manifest, code, detail, hour=hour, upload=upload, **extra)
        ledger.write_section(
            store, upload.vehicle, upload.drive, ledger.INGEST, record, index=False
        )
        return record

    log_info = store.head(upload.log_key)
    if log_info is None:
        return set_aside("missing_log", f"{upload.log_key} does not exist")
    if log_info.size != upload.size:
        return set_aside(
            "checksum_mismatch",
            f"log has {log_info.size} bytes, the manifest says {upload.size}",
        )
    try:
        with store.open(upload.log_key) as stream:
            log = decode_log(stream, vehicle=upload.vehicle, drive=upload.drive)
    except DecodeError as err:
        return set_aside(err.code, err.detail)
    if log.sha256 != upload.sha256:
        return set_aside(
            "checksum_mismatch",
            f"log sha256 is {log.sha256}, the manifest says {upload.sha256}",
        )
    if problem := _identity_problem(log, upload):
        return set_aside("identity_mismatch", problem)

    tables = _write_tables(store, log, upload)
    reasons = [{"code": "truncated", "detail": log.truncation_detail}] if log.truncated else []
    duration = ((log.end_ns or 0) - (log.start_ns or 0)) / 1e9
    record = _versioned(
        {
            "status": RECOVERED if log.truncated else INGESTED,
            "reasons": reasons,
            "vehicle": upload.vehicle,
            "drive": upload.drive,
            "manifest_key": manifest.key,
            "log_key": upload.log_key,
            "sha256": upload.sha256,
            "bytes": log.size,
            "hour": hour,
            "arrived_at": manifest.last_modified.isoformat(),
            "start": datetime.fromtimestamp((log.start_ns or 0) / 1e9, UTC).isoformat(),
            "end": datetime.fromtimestamp((log.end_ns or 0) / 1e9, UTC).isoformat(),
            "duration_s": round(duration, 3),
            "messages": dict(log.messages),
            "chunks": log.chunks,
            "unmapped_topics": log.unmapped,
            "log_metadata": log.drive_metadata,
            "software_version": upload.software_version,
            "model_version": upload.model_version,
            "trigger": upload.trigger,
            "decoder_version": decoder_version(),
            "tables": tables,
            "processed_at": _now(),
        }
    )
    ledger.write_section(store, upload.vehicle, upload.drive, ledger.INGEST, record, index=False)
    return record


def worker_died(store: ObjectStore, manifest: ObjectInfo, *, hour: str) -> dict[str, Any]:
    """Quarantine an upload whose ingest killed its worker process (a decoder that crashed
    on its bytes, or ran out of memory on them): its ingest section says so, so the same
    decoder does not meet it again until its version changes."""
    record = quarantine(
        store,
        manifest,
        "worker_died",
        "the process ingesting this upload died (a crash or the OOM killer)",
        hour=hour,
    )
    if record["vehicle"] and record["drive"] and not record.get("skipped"):
        ledger.write_section(
            store, record["vehicle"], record["drive"], ledger.INGEST, record, index=False
        )
    return record

"""The vehicle side of the upload protocol.

1. The log is uploaded with a multipart upload under
   ``raw/date=<upload day, UTC>/vehicle=<id>/<drive>.mcap``. An interrupted upload is resumed:
   the parts already on the server are listed and compared with the local file (MD5 ETag)
   and only the rest is sent.
2. The object is created once (``If-None-Match``); the server-side size is checked.
3. The manifest (vehicle, drive, times, versions, size, SHA-256, trigger) is written last:
   it is the commit marker. No manifest, no drive.

Re-uploading the same drive is a no-op; a different file under the same drive id is refused
with ``DriveConflict`` and never overwrites. Ingest re-checks the SHA-256 of every byte.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dataloop.lake.hashing import HashingReader, sha256_file
from dataloop.lake.layout import RawKeys, validate_id
from dataloop.lake.manifest import UploadManifest
from dataloop.lake.store import PART_SIZE, ObjectExists, ObjectStore, PartInfo

Progress = Callable[[int, int], None]
"""Called with (bytes sent or verified so far, total bytes)."""


class DriveConflict(Exception):
    """A different file was already uploaded under this vehicle and drive id."""


@dataclass(frozen=True)
class UploadResult:
    status: str
    """"uploaded", "resumed" or "already_uploaded"."""
    log_key: str
    manifest_key: str
    sha256: str
    size: int
    parts_sent: int = 0
    parts_reused: int = 0


def _log_times(path: Path) -> tuple[str | None, str | None, dict[str, str]]:
    """Start/end time and drive metadata from the log's summary; best effort (a damaged log
    is still uploaded, ingest quarantines it)."""
    from mcap.reader import make_reader

    from dataloop.fleet.contract import DRIVE_METADATA

    try:
        with path.open("rb") as f:
            reader = make_reader(f)
            stats = reader.get_summary().statistics
            meta = next(
                (dict(m.metadata) for m in reader.iter_metadata() if m.name == DRIVE_METADATA), {}
            )

        def iso(ns: int) -> str:
            return datetime.fromtimestamp(ns / 1e9, UTC).isoformat()

        return iso(stats.message_start_time), iso(stats.message_end_time), meta
    except Exception:  # noqa: BLE001 - any unreadable log is uploaded as is
        return None, None, {}


def _existing(store: ObjectStore, candidates: list[RawKeys], sha: str) -> RawKeys | None:
    """The committed upload of this drive among the candidate days, if any."""
    for keys in candidates:
        if (info := store.head(keys.manifest)) is None:
            continue
        committed = UploadManifest.from_json(store.get(keys.manifest))
        if committed.sha256 != sha:
            raise DriveConflict(
                f"drive {keys.drive} of vehicle {keys.vehicle} was already uploaded at "
                f"{keys.log} ({info.last_modified:%Y-%m-%d %H:%M} UTC) with a different "
                f"sha256 ({committed.sha256[:12]}…, this file {sha[:12]}…); "
                "use a new drive id"
            )
        return keys
    return None


def _send_parts(
    store: ObjectStore,
    key: str,
    path: Path,
    size: int,
    part_size: int,
    progress: Progress | None,
) -> tuple[list[PartInfo], int, int]:
    """Upload (or resume) the multipart upload of ``path`` to ``key``."""
    pending = store.find_multipart(key)
    upload_id = pending[-1] if pending else store.start_multipart(key)
    remote = {p.number: p for p in store.list_parts(key, upload_id)} if pending else {}
    parts: list[PartInfo] = []
    sent = reused = done = 0
    with path.open("rb") as f:
        number = 1
        while True:
            data = f.read(part_size)
            if not data and number > 1:
                break
            have = remote.get(number)
            if have and have.size == len(data) and have.etag == hashlib.md5(data).hexdigest():
                parts.append(have)
                reused += 1
            else:
                parts.append(store.put_part(key, upload_id, number, data))
                sent += 1
            done += len(data)
            if progress:
                progress(done, size)
            number += 1
            if len(data) < part_size:
                break
    try:
        store.complete_multipart(key, upload_id, parts)
    except ObjectExists:
        store.abort_multipart(key, upload_id)
        raise
    return parts, sent, reused


def _remote_sha256(store: ObjectStore, key: str) -> str:
    reader = HashingReader(store.open(key))
    reader.drain()
    return reader.hexdigest()


def upload_drive(
    store: ObjectStore,
    path: str | Path,
    *,
    vehicle: str,
    drive: str | None = None,
    trigger: str = "continuous",
    now: datetime | None = None,
    part_size: int = PART_SIZE,
    progress: Progress | None = None,
) -> UploadResult:
    """Upload one drive log and commit it with its manifest. The drive id defaults to the one
    the log names in its metadata, else the file name."""
    path = Path(path)
    validate_id(vehicle, "vehicle")
    start, end, meta = _log_times(path)
    drive = validate_id(drive or meta.get("drive") or path.name.removesuffix(".mcap"), "drive")
    sha, size = sha256_file(path)
    now = now or datetime.now(UTC)
    today = RawKeys(now.date(), vehicle, drive)
    yesterday = RawKeys((now - timedelta(days=1)).date(), vehicle, drive)

    if done := _existing(store, [today, yesterday], sha):
        if progress:
            progress(size, size)
        return UploadResult("already_uploaded", done.log, done.manifest, sha, size)

    # An unfinished upload started yesterday is resumed under yesterday's key.
    keys = yesterday if store.find_multipart(yesterday.log) else today
    resumed = bool(store.find_multipart(keys.log))
    sent = reused = 0
    completed_here = False
    if store.head(keys.log) is None:
        with contextlib.suppress(ObjectExists):  # completed concurrently: verified below
            _, sent, reused = _send_parts(store, keys.log, path, size, part_size, progress)
            completed_here = True
    info = store.head(keys.log)
    # A log that was already there (a crash between upload and manifest, or someone else's
    # file) is hashed on the server side before we commit it as ours.
    remote_sha = sha if completed_here else _remote_sha256(store, keys.log)
    if info is None or info.size != size or remote_sha != sha:
        raise DriveConflict(
            f"{keys.log} already holds a different file ({info.size if info else 0} bytes, "
            f"sha256 {remote_sha[:12]}…); use a new drive id"
        )

    manifest = UploadManifest(
        vehicle=vehicle,
        drive=drive,
        log_key=keys.log,
        size=size,
        sha256=sha,
        start=start,
        end=end,
        software_version=meta.get("software_version", "unknown"),
        model_version=meta.get("model_version", "unknown"),
        trigger=trigger,
        uploaded_at=datetime.now(UTC).isoformat(),
    )
    try:
        store.put(keys.manifest, manifest.to_json())
    except ObjectExists:
        if _existing(store, [keys], sha):
            return UploadResult("already_uploaded", keys.log, keys.manifest, sha, size)
    status = "resumed" if resumed else "uploaded"
    return UploadResult(status, keys.log, keys.manifest, sha, size, sent, reused)

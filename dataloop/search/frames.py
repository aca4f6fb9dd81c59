"""Anonymised camera frames of compliant drives, read by ranges from their frame packs.

Search only ever shows these frames: the raw ones never leave ``raw/``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from dataloop.ingest.frames import decode_image
from dataloop.ingest.tables import read_table
from dataloop.lake import ledger
from dataloop.lake.store import ObjectStore
from dataloop.quality.suites import pick_front

NS = 1_000_000_000


def has_frames(compliance: dict | None) -> bool:
    """Whether a compliance section names anonymised frames (a frame pack and its index)."""
    return bool(compliance and compliance.get("frame_pack") and compliance.get("frame_index"))


def framed(state: ledger.DriveState) -> bool:
    """Whether a drive is compliant and has anonymised frames."""
    return state.compliant and has_frames(state.compliance)


@dataclass
class FramePack:
    """One drive's anonymised JPEGs, every camera's: a pack object and its index (time,
    offset, length, camera), in time order."""

    vehicle: str
    drive: str
    key: str
    t: np.ndarray
    offset: np.ndarray
    length: np.ndarray
    camera: np.ndarray

    def cameras(self) -> list[str]:
        return sorted(set(self.camera.tolist()))

    def of(self, camera: str) -> FramePack:
        """The frames of one camera."""
        keep = self.camera == camera
        return FramePack(
            self.vehicle,
            self.drive,
            self.key,
            self.t[keep],
            self.offset[keep],
            self.length[keep],
            self.camera[keep],
        )

    def front(self, camera: str) -> FramePack:
        """The frames of ``camera`` (the fleet profile's front one), or, in a drive without
        it, of the first camera by name."""
        return self.of(pick_front(self.cameras(), camera) or camera)

    def nearest(self, t_ns: int) -> int:
        """Index of the frame closest in time to ``t_ns``."""
        i = int(np.searchsorted(self.t, t_ns))
        if i == 0:
            return 0
        if i == len(self.t):
            return i - 1
        return i if self.t[i] - t_ns < t_ns - self.t[i - 1] else i - 1

    def every(self, seconds: float) -> np.ndarray:
        """Indices of one frame every ``seconds`` (the first frame at or after each step)."""
        if not len(self.t):
            return np.zeros(0, np.int64)
        steps = np.arange(self.t[0], self.t[-1] + 1, int(seconds * NS))
        return np.unique(np.minimum(np.searchsorted(self.t, steps), len(self.t) - 1))

    def read(self, store: ObjectStore, indices: list[int] | np.ndarray) -> list[bytes]:
        """The JPEGs at ``indices`` (ranged reads, a few at once: one request each on S3)."""

        def one(i: int) -> bytes:
            return store.get_range(self.key, int(self.offset[i]), int(self.length[i]))

        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(one, [int(i) for i in indices]))


def open_pack(store: ObjectStore, vehicle: str, drive: str, entry: dict | None = None) -> FramePack:
    """The frame pack of a compliant drive. ``entry`` (the drive's compliance section) saves
    a read; raises LookupError when the drive has no anonymised frames."""
    entry = entry or ledger.section(store, vehicle, drive, ledger.COMPLIANCE) or {}
    if not has_frames(entry):
        raise LookupError(f"{vehicle}/{drive} has no anonymised frames (not compliant)")
    index = read_table(store, entry["frame_index"]).sort_by("t")
    cameras = (  # an index from before several cameras: the one camera it had
        index.column("camera").to_pylist()
        if "camera" in index.column_names
        else ["front"] * len(index)
    )
    return FramePack(
        vehicle,
        drive,
        entry["frame_pack"],
        index.column("t").cast("int64").to_numpy(),
        index.column("offset").to_numpy(),
        index.column("length").to_numpy(),
        np.array(cameras, dtype=object),
    )


def decode_rgb(jpeg: bytes) -> np.ndarray:
    """A JPEG of a frame pack (or any image file's bytes) as an RGB uint8 array: the frames'
    one decoder (``ingest.frames.decode_image``)."""
    return decode_image(jpeg)

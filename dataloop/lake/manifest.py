"""The upload manifest: written last by the vehicle, it is the commit marker of a drive."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from dataloop.lake.layout import validate_id

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_MANIFEST_BYTES = 64 * 1024
MAX_FIELD_CHARS = 256
"""Longest text field (versions, trigger, times): a manifest's fields are copied into records."""


class InvalidManifest(ValueError):
    pass


@dataclass(frozen=True)
class UploadManifest:
    vehicle: str
    drive: str
    log_key: str
    size: int
    sha256: str
    start: str | None
    """First message time of the drive, ISO 8601 UTC (None when the log has no summary)."""
    end: str | None
    software_version: str
    model_version: str
    trigger: str
    """Why this segment was uploaded: "continuous", "disengagement", "manual", ..."""
    uploaded_at: str
    contract_version: int = 1

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> UploadManifest:
        if len(data) > MAX_MANIFEST_BYTES:
            raise InvalidManifest(f"manifest is {len(data)} bytes, more than {MAX_MANIFEST_BYTES}")
        try:
            raw: Any = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InvalidManifest(f"manifest is not JSON: {err}") from None
        except RecursionError:
            raise InvalidManifest("manifest JSON is nested too deeply") from None
        if not isinstance(raw, dict):
            raise InvalidManifest("manifest is not a JSON object")
        names = {f.name for f in fields(cls)}
        required = names - {"contract_version"}
        if missing := sorted(required - raw.keys()):
            raise InvalidManifest(f"manifest lacks {', '.join(missing)}")
        for f in fields(cls):
            if f.name not in raw:
                continue
            value, optional = raw[f.name], f.name in ("start", "end")
            if f.name in ("size", "contract_version"):
                if not isinstance(value, int) or isinstance(value, bool):
                    raise InvalidManifest(f"{f.name} must be an integer, not {_kind(value)}")
            elif not (isinstance(value, str) or (optional and value is None)):
                raise InvalidManifest(f"{f.name} must be a string, not {_kind(value)}")
            elif isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
                raise InvalidManifest(
                    f"{f.name} is {len(value)} characters long, more than {MAX_FIELD_CHARS}"
                )
        m = cls(**{k: v for k, v in raw.items() if k in names})
        try:
            validate_id(m.vehicle, "vehicle")
            validate_id(m.drive, "drive")
        except ValueError as err:
            raise InvalidManifest(str(err)) from None
        if not isinstance(m.size, int) or m.size < 0:
            raise InvalidManifest(f"invalid size {m.size!r}")
        if not isinstance(m.sha256, str) or not _SHA256.match(m.sha256):
            raise InvalidManifest(f"invalid sha256 {m.sha256!r}")
        return m


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__

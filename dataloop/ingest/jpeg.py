"""A structural JPEG check that costs microseconds, not a decode: start and end markers and
the frame header's size. Ingest records it per frame so quality checks are column checks."""

from __future__ import annotations

import struct

_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_header(data: bytes) -> tuple[bool, int, int]:
    """(looks valid, width, height); (False, 0, 0) when markers are missing or broken."""
    if len(data) < 4 or data[:2] != b"\xff\xd8" or data[-2:] != b"\xff\xd9":
        return False, 0, 0
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return False, 0, 0
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker in _SOF:
            if pos + 9 > n:
                return False, 0, 0
            height, width = struct.unpack_from(">HH", data, pos + 5)
            return width > 0 and height > 0, width, height
        if marker == 0xDA or length < 2:  # scan data before any frame header
            return False, 0, 0
        pos += 2 + length
    return False, 0, 0

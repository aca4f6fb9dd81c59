"""A contact sheet: one PNG with a thumbnail of every hit's frame and a caption (rank, score,
scenario, vehicle/drive, time), for a glance at what a search found."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from dataloop.lake.store import ObjectStore
from dataloop.quality.suites import load_fleet
from dataloop.search.frames import FramePack, decode_rgb, open_pack
from dataloop.search.search import Hit

THUMB = (240, 144)
"""Thumbnail width, height: the camera's 5:3."""
CAPTION = 46
PAD = 6
TITLE = 24
COLUMNS = 5


def sheet_size(hits: int, columns: int = COLUMNS) -> tuple[int, int]:
    """The sheet's pixel size (width, height) for ``hits`` thumbnails."""
    cols = max(1, min(columns, hits))
    rows = max(1, -(-hits // cols))
    return (
        PAD + cols * (THUMB[0] + PAD),
        TITLE + PAD + rows * (THUMB[1] + CAPTION + PAD),
    )


def _hhmmss(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%H:%M:%S")


def caption(hit: Hit) -> list[str]:
    what = hit.scenario or ("frame" if hit.kind == "window" else "clip")
    return [
        f"#{hit.rank}  {hit.score:.3f}  {what}  {hit.conditions or ''}",
        f"{hit.vehicle_id} / {hit.drive_id}",
        f"{_hhmmss(hit.start_ns)}-{_hhmmss(hit.end_ns)} UTC {hit.day or ''}",
    ]


def contact_sheet(
    store: ObjectStore, hits: list[Hit], path: str | Path, title: str = "", columns: int = COLUMNS
) -> Path:
    """Write the sheet as PNG to ``path`` (folders made); returns the path."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=12)
    sheet = Image.new("RGB", sheet_size(len(hits), columns), (24, 24, 28))
    draw = ImageDraw.Draw(sheet)
    draw.text((PAD, 5), title[:160], fill=(240, 240, 240), font=font)
    cols = max(1, min(columns, len(hits)))
    packs: dict[tuple[str, str], FramePack | None] = {}
    for n, hit in enumerate(hits):
        x = PAD + (n % cols) * (THUMB[0] + PAD)
        y = TITLE + PAD + (n // cols) * (THUMB[1] + CAPTION + PAD)
        sheet.paste(_thumbnail(store, hit, packs), (x, y))
        for line, text in enumerate(caption(hit)):
            draw.text((x + 2, y + THUMB[1] + 2 + 14 * line), text, fill=(220, 220, 220), font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG")
    return path


def _thumbnail(store: ObjectStore, hit: Hit, packs: dict):
    from PIL import Image, ImageDraw

    key = (hit.vehicle_id, hit.drive_id)
    if key not in packs:
        try:
            packs[key] = open_pack(store, *key)
        except LookupError:  # forgotten since it was indexed: no frame to show
            packs[key] = None
    pack = packs[key]
    if pack is None or not len(pack.t):
        thumb = Image.new("RGB", THUMB, (60, 60, 60))
        ImageDraw.Draw(thumb).text((8, 8), "no frame", fill=(200, 200, 200))
        return thumb
    view = (
        pack.of(hit.camera)
        if hit.camera in pack.cameras()
        else pack.front(load_fleet()["front_camera"])
    )
    jpeg = view.read(store, [view.nearest(hit.frame_ns)])[0]
    return Image.fromarray(decode_rgb(jpeg)).resize(THUMB, Image.BILINEAR)

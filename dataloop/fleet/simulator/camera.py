"""A small front-camera renderer (numpy + Pillow, 320x192 JPEG by default).

It draws the road, lane lines, vehicles with licence plates and pedestrians in perspective
from the ego frame, under one of the weather and light conditions below. It is not
photorealistic: it gives the image stages (freeze and decode checks, image search, labelling
projection) frames whose content and brightness follow the scene.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CONDITIONS = ("day", "dusk", "night", "rain", "fog", "snow", "flooded")


@dataclass(frozen=True)
class Camera:
    width: int = 320
    height: int = 192
    focal: float = 260.0  # px
    mount_height: float = 1.4  # m above the road
    max_range: float = 120.0

    @property
    def horizon(self) -> float:
        return self.height * 0.45

    def project(self, x: float, y: float, z: float = 0.0) -> tuple[float, float]:
        """Ego-frame point (x forward, y left, z up) to pixel (u right, v down)."""
        return (
            self.width / 2 - self.focal * y / x,
            self.horizon + self.focal * (self.mount_height - z) / x,
        )


_SKY = {
    "day": (135, 180, 230),
    "dusk": (230, 140, 90),
    "night": (12, 14, 28),
    "rain": (110, 118, 128),
    "fog": (190, 192, 195),
    "snow": (200, 205, 215),
    "flooded": (120, 130, 140),
}
_GROUND = {
    "day": (96, 130, 80),
    "dusk": (80, 90, 60),
    "night": (10, 12, 10),
    "rain": (60, 75, 55),
    "fog": (150, 155, 150),
    "snow": (225, 228, 235),
    "flooded": (70, 80, 70),
}
_ROAD = {
    "day": (92, 92, 96),
    "dusk": (75, 70, 72),
    "night": (22, 22, 26),
    "rain": (55, 58, 62),
    "fog": (140, 142, 145),
    "snow": (150, 150, 155),
    "flooded": (60, 75, 95),
}
_CAR_COLOURS = [(180, 30, 30), (30, 60, 160), (220, 220, 225), (40, 40, 45), (200, 160, 40)]


def _shade(colour: tuple[int, int, int], condition: str) -> tuple[int, int, int]:
    k = {"night": 0.25, "dusk": 0.7, "rain": 0.75, "flooded": 0.8}.get(condition, 1.0)
    return tuple(int(c * k) for c in colour)


def render_frame(
    objects: list[dict],
    lane_lines: list[float],
    condition: str,
    rng: np.random.Generator,
    camera: Camera = Camera(),
    quality: int = 80,
) -> bytes:
    """One JPEG. ``objects`` in the ego frame; ``lane_lines``: lateral offsets (m) of the lane
    markings, the road's edges first and last."""
    w, h, hz = camera.width, camera.height, camera.horizon
    img = Image.new("RGB", (w, h), _SKY[condition])
    d = ImageDraw.Draw(img)
    d.rectangle([0, hz, w, h], fill=_GROUND[condition])
    near, far = 2.0, camera.max_range
    left, right = lane_lines[-1], lane_lines[0]
    road = [
        camera.project(far, left),
        camera.project(far, right),
        camera.project(near, right),
        camera.project(near, left),
    ]
    d.polygon(road, fill=_ROAD[condition])
    if condition == "flooded":
        water = [
            camera.project(25, left),
            camera.project(25, right),
            camera.project(8, right),
            camera.project(8, left),
        ]
        d.polygon(water, fill=(70, 95, 130))
    marking = (235, 235, 200) if condition != "night" else (120, 120, 100)
    for i, y in enumerate(lane_lines):
        solid = i in (0, len(lane_lines) - 1)
        for x0 in np.arange(near, far, 6.0 if not solid else 3.0):
            x1 = x0 + (3.0 if not solid else 3.0)
            a, b = camera.project(x0, y), camera.project(x1, y)
            d.line([a, b], fill=marking, width=max(1, int(3 * 6 / x0)))
    # far objects first, so near ones cover them
    for o in sorted(objects, key=lambda o: -o["x"]):
        x = o["x"] - o["length"] / 2
        if x < near or x > far:
            continue
        u0, v0 = camera.project(x, o["y"] + o["width"] / 2, o["height"])
        u1, v1 = camera.project(x, o["y"] - o["width"] / 2, 0.0)
        if u1 < 0 or u0 > w:
            continue
        if o["object_class"] == "pedestrian":
            d.rectangle([u0, v0, u1, v1], fill=_shade((200, 120, 60), condition))
            head = (u1 - u0) / 2
            d.ellipse([u0, v0 - 2 * head, u1, v0], fill=_shade((230, 190, 160), condition))
            continue
        body = _shade(_CAR_COLOURS[o["id"] % len(_CAR_COLOURS)], condition)
        d.rectangle([u0, v0, u1, v1], fill=body)
        glass_bottom = v0 + (v1 - v0) * 0.4
        d.rectangle([u0 + 1, v0 + 1, u1 - 1, glass_bottom], fill=_shade((60, 70, 80), condition))
        pw, ph = (u1 - u0) * 0.3, (v1 - v0) * 0.12
        cu, pv = (u0 + u1) / 2, v0 + (v1 - v0) * 0.75
        d.rectangle([cu - pw / 2, pv - ph / 2, cu + pw / 2, pv + ph / 2], fill=(240, 240, 240))
        lights = (255, 40, 30) if condition in ("night", "dusk", "fog", "rain") else (150, 20, 20)
        r = max(1.0, (u1 - u0) * 0.06)
        for lu in (u0 + 2 * r, u1 - 2 * r):
            d.ellipse([lu - r, pv - 3 * r, lu + r, pv - r], fill=lights)
    if condition == "night":  # headlight cone on the road
        cone = [camera.project(40, 3), camera.project(40, -3), (w * 0.85, h), (w * 0.15, h)]
        overlay = Image.new("RGB", (w, h), (0, 0, 0))
        ImageDraw.Draw(overlay).polygon(cone, fill=(60, 55, 40))
        img = Image.fromarray(
            np.minimum(255, np.asarray(img, np.int16) + np.asarray(overlay)).astype(np.uint8)
        )
    pixels = np.asarray(img, dtype=np.float32)
    if condition == "fog":
        pixels = pixels * 0.45 + 190 * 0.55
    if condition == "rain":
        img = Image.fromarray(pixels.astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.8))
        pixels = np.asarray(img, dtype=np.float32)
        for _ in range(60):
            u, v = rng.uniform(0, w), rng.uniform(0, h)
            pixels[int(v) : int(v) + 6, int(u)] += 40
    if condition == "snow":
        us, vs = rng.integers(0, w, 250), rng.integers(0, h, 250)
        pixels[vs, us] = 250
    noise = rng.normal(0, 4.0 if condition != "night" else 6.0, size=(h, w, 1))
    out = Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def luma(jpeg: bytes) -> np.ndarray:
    """Decoded luma (Y) of a JPEG, for brightness and contrast checks."""
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("L"), dtype=np.float32)

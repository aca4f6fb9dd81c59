"""Blur faces and licence plates before a frame is usable downstream.

The detector is pluggable (``load_detector``): the default is OpenCV's Haar cascades, which
ship inside opencv-python-headless, so nothing is downloaded. Haar cascades are fast and
dated: they find frontal faces and plates reasonably, miss profiles and small or blurred
plates. A stronger detector plugs in as ``package.module:Class``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol

import numpy as np

Box = tuple[int, int, int, int]  # x, y, width, height in pixels


@dataclass(frozen=True)
class Detection:
    kind: str  # "face" or "plate"
    box: Box


class Detector(Protocol):
    """Finds faces and plates in a grey frame. It runs in the hour's worker processes
    (``DATALOOP_WORKERS``), so it must pickle: a model that does not, rebuilt from its
    recipe (``__reduce__``), as ``HaarDetector`` is."""

    name: str
    version: str

    def detect(self, gray: np.ndarray) -> list[Detection]: ...


class HaarDetector:
    """OpenCV Haar cascades: frontal faces and (Russian-style) number plates."""

    name = "opencv-haar"

    def __init__(self) -> None:
        import cv2

        self.version = cv2.__version__
        root = cv2.data.haarcascades
        self._cascades = {
            "face": (cv2.CascadeClassifier(root + "haarcascade_frontalface_default.xml"), 5),
            "plate": (cv2.CascadeClassifier(root + "haarcascade_russian_plate_number.xml"), 3),
        }

    def __reduce__(self):
        """Sent to a worker process as the recipe (OpenCV's cascades do not pickle)."""
        return (HaarDetector, ())

    def detect(self, gray: np.ndarray) -> list[Detection]:
        found = []
        for kind, (cascade, neighbours) in self._cascades.items():
            for x, y, w, h in cascade.detectMultiScale(gray, 1.1, neighbours, minSize=(8, 8)):
                found.append(Detection(kind, (int(x), int(y), int(w), int(h))))
        return found


def load_detector(spec: str = "haar") -> Detector:
    """``haar`` (the default) or ``package.module:Class`` for another detector."""
    if spec == "haar":
        return HaarDetector()
    module, _, cls = spec.partition(":")
    return getattr(importlib.import_module(module), cls)()


def blur(image: np.ndarray, boxes: list[Box], margin: float = 0.15) -> np.ndarray:
    """Pixelate then blur each box (plus a margin) so that nothing inside stays legible."""
    import cv2

    out = image.copy()
    h, w = image.shape[:2]
    for x, y, bw, bh in boxes:
        mx, my = int(bw * margin), int(bh * margin)
        x0, y0, x1, y1 = max(0, x - mx), max(0, y - my), min(w, x + bw + mx), min(h, y + bh + my)
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        region = out[y0:y1, x0:x1]
        small = cv2.resize(region, (max(1, (x1 - x0) // 8), max(1, (y1 - y0) // 8)))
        coarse = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
        out[y0:y1, x0:x1] = cv2.GaussianBlur(coarse, (0, 0), max(1.0, (x1 - x0) / 10))
    return out


def anonymise_image(image: np.ndarray, detector: Detector, quality: int = 85):
    """(anonymised JPEG, detections) of an RGB frame (``ingest.frames.frame_image``). A frame
    with nothing to hide is encoded all the same, so no downstream reader ever needs the raw
    zone (and a raw camera's frames leave compliance as JPEGs like any other's)."""
    import cv2

    found = detector.detect(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
    bgr = cv2.cvtColor(blur(image, [d.box for d in found]), cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return encoded.tobytes(), found


def anonymise_jpeg(jpeg: bytes, detector: Detector, quality: int = 85):
    """:func:`anonymise_image` of an image file's bytes; ValueError when they do not decode."""
    from dataloop.ingest.frames import decode_image

    return anonymise_image(decode_image(jpeg), detector, quality)

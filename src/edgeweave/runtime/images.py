"""Frames from a folder of images: each image file, in name order, one frame of a model
whose input is one image batch ``(1, C, H, W)`` (``C`` 1 or 3).

An image is converted to grey or RGB as ``C`` says, resized to ``H x W`` (bilinear) and
scaled to [0, 1] — no normalisation by mean and spread, which a model's own preprocessing
would add. Images are read one at a time, as a stream draws them (Pillow decodes them).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from edgeweave.errors import EdgeweaveError

SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")


def image_files(folder: str | Path) -> list[Path]:
    """The image files in ``folder`` (by suffix, not in subfolders), in name order."""
    path = Path(folder)
    if not path.is_dir():
        raise EdgeweaveError(f"'{folder}' is not a folder of images.")
    found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not found:
        raise EdgeweaveError(f"The folder '{folder}' holds no image files "
                             f"({', '.join(SUFFIXES)}).")
    return found


def image_shape(shapes: Sequence[tuple[int, ...]], model: str) -> tuple[int, ...]:
    """The input shape ``(1, C, H, W)`` that images feed, from a model's input shapes; a
    model that takes anything else is named."""
    if len(shapes) != 1 or len(shapes[0]) != 4 or shapes[0][0] != 1 or shapes[0][1] not in (1, 3):
        raise EdgeweaveError(f"Images can feed a model with one input of shape (1, C, H, W), "
                             f"C 1 or 3; model '{model}' takes "
                             f"{', '.join(str(tuple(s)) for s in shapes)}.")
    return tuple(shapes[0])


def read_image(path: Path, shape: tuple[int, ...]) -> torch.Tensor:
    """The image at ``path`` as a float32 tensor of ``shape`` ``(1, C, H, W)`` in [0, 1]."""
    from PIL import Image

    _, channels, height, width = shape
    try:
        with Image.open(path) as image:
            converted = image.convert("L" if channels == 1 else "RGB").resize(
                (width, height), Image.Resampling.BILINEAR)
    except Exception as error:  # Pillow, or a plugin another library registered with it
        raise EdgeweaveError(f"Cannot read the image '{path}': {type(error).__name__}: "
                             f"{error}") from None
    pixels = torch.from_numpy(np.asarray(converted, dtype=np.float32) / 255.0)
    return pixels.reshape(height, width, channels).permute(2, 0, 1).unsqueeze(0).contiguous()


def image_frames(paths: Sequence[Path], shape: tuple[int, ...]) -> Iterator[torch.Tensor]:
    """Each image as a frame of ``shape``, read only when drawn."""
    for path in paths:
        yield read_image(path, shape)

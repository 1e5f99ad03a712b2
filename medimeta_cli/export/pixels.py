"""Pixel conversions both export layouts share."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from medimeta_cli.export.options import Color


def convert_color(images: npt.NDArray[np.uint8], color: Color | None) -> npt.NDArray[np.uint8]:
    """Convert a batch to RGB or grayscale (Pillow's ITU-R 601-2 luma, exactly)."""
    if color is Color.RGB and images.ndim == 3:
        return np.repeat(images[..., None], 3, axis=-1)
    if color is Color.GRAYSCALE and images.ndim == 4:
        weights = np.array([19595, 38470, 7471], dtype=np.uint32)
        luma = (images.astype(np.uint32) @ weights + 0x8000) >> 16
        return luma.astype(np.uint8)
    return images

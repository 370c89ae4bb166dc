"""A big image with known pixels, written fast by libvips, for the tile tests."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

WIDTH, HEIGHT = 12_000, 9_000
"""108 MP: over the 100 MP above which images are shown by tiles, and a tiled TIFF."""


def pattern(x0: int, y0: int, width: int, height: int, *, shift: int = 0) -> np.ndarray:
    """The true pixels of :func:`write_pattern_tiff`'s image in ``[x0, x0 + width) x [y0, y0 + height)``."""
    xs, ys = np.meshgrid(np.arange(x0, x0 + width) + shift, np.arange(y0, y0 + height))
    return np.stack([(xs * 7) % 256, (ys * 5) % 256, ((xs + ys) // 3) % 256], -1).astype(np.uint8)


def write_pattern_tiff(path: Path, width: int = WIDTH, height: int = HEIGHT, *, shift: int = 0) -> None:
    """A tiled, losslessly compressed BigTIFF whose pixel ``(x, y)`` is :func:`pattern`'s (computed
    by libvips band by band, written in a second or two; ``shift`` moves the pattern)."""
    import pyvips

    xy = pyvips.Image.xyz(width, height)
    x, y = xy.extract_band(0) + shift, xy.extract_band(1)
    image = ((x * 7) % 256).bandjoin([(y * 5) % 256, ((x + y) // 3) % 256]).cast("uchar")
    image.tiffsave(os.fspath(path), tile=True, tile_width=512, tile_height=512, compression="deflate", bigtiff=True)

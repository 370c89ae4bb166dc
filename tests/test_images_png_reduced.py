"""A PNG asked for at reduced size is decoded by libvips while streaming, where pyvips is installed."""

from __future__ import annotations

import builtins
from pathlib import Path

import cv2
import numpy as np
import pytest

import labeler.core.images as images
from labeler.core.images import read_image


def _png(tmp_path: Path, height: int = 203, width: int = 101) -> tuple[Path, np.ndarray]:
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(x * 2) % 256, (y * 3) % 256, (x + y) % 256], axis=-1).astype(np.uint8)
    path = tmp_path / "big.png"
    cv2.imwrite(str(path), rgb[..., ::-1])
    return path, rgb


@pytest.mark.parametrize("reduce", [2, 4, 8])
def test_a_reduced_png_through_libvips_matches_the_whole_decode_shrunk(tmp_path: Path, reduce: int) -> None:
    pytest.importorskip("pyvips", reason="pyvips (the optional 'big' extra) is not installed")
    path, rgb = _png(tmp_path)
    streamed = images._png_reduced(path, reduce, width=101, height=203)
    assert streamed is not None  # libvips decoded it
    whole = cv2.resize(rgb, (101 // reduce, 203 // reduce), interpolation=cv2.INTER_AREA)
    got = read_image(path, reduce=reduce)
    assert got.shape == whole.shape == (203 // reduce, 101 // reduce, 3)  # OpenCV's sizes, sides rounded down
    assert np.array_equal(got, streamed)
    h, w = whole.shape[:2]
    block = rgb[: h * reduce, : w * reduce].reshape(h, reduce, w, reduce, 3).mean(axis=(1, 3))
    assert np.abs(got.astype(float) - block).max() <= 1.0  # each pixel the mean of its block, RGB order


def test_without_pyvips_a_reduced_png_still_decodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _rgb = _png(tmp_path)
    real_import = builtins.__import__

    def no_pyvips(name: str, *args, **kwargs):
        if name == "pyvips":
            raise ImportError("no pyvips here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyvips)
    assert images._png_reduced(path, 4, width=101, height=203) is None
    got = read_image(path, reduce=4)
    assert got.shape == (50, 25, 3)


def test_a_damaged_png_is_still_a_clear_error(tmp_path: Path) -> None:
    path, _ = _png(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # cut in the middle of its pixels
    with pytest.raises(images.ImageError):
        read_image(path, reduce=2)

"""A PNG asked for at reduced size is decoded by libvips while streaming, where pyvips is installed."""

from __future__ import annotations

import builtins
import itertools
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


def test_a_png_streams_in_bands_from_the_top_with_the_pixels_of_the_whole_decode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pyvips", reason="pyvips (the optional 'big' extra) is not installed")
    monkeypatch.setattr(images, "FIRST_BAND_ROWS", 8)
    monkeypatch.setattr(images, "BAND_ROWS", 20)
    path, _rgb = _png(tmp_path, height=403, width=161)
    handed: list[tuple[int, np.ndarray]] = []

    def on_rows(pixels: np.ndarray, rows: int) -> bool:
        handed.append((rows, pixels[:rows].copy()))  # what was there when the rows were handed over
        return True

    got = images.stream_image(path, 2, on_rows)
    whole = read_image(path, reduce=2)
    assert got is not None and np.array_equal(got, whole)
    rows = [r for r, _ in handed]
    assert rows[0] >= 8 and rows[-1] == 201 and rows == sorted(set(rows)) and len(rows) >= 5
    assert all(b - a >= 20 for a, b in itertools.pairwise(rows[:-1]))  # bands, not a call per row
    for r, seen in handed:
        assert np.array_equal(seen, whole[:r])  # each band whole when handed over


def test_a_stream_stops_when_asked_and_other_files_do_not_stream(tmp_path: Path) -> None:
    pytest.importorskip("pyvips", reason="pyvips (the optional 'big' extra) is not installed")
    path, rgb = _png(tmp_path, height=900, width=200)
    calls: list[int] = []
    assert images.stream_image(path, 2, lambda _p, rows: calls.append(rows) is not None) is None
    assert len(calls) == 1 and images.FIRST_BAND_ROWS <= calls[0] < 450  # stopped at the first band
    jpeg = tmp_path / "photo.jpg"
    cv2.imwrite(str(jpeg), rgb)
    rgba = tmp_path / "alpha.png"
    cv2.imwrite(str(rgba), np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)]))
    for other in (jpeg, rgba):
        assert (
            images.stream_image(other, 2, lambda _p, _r: pytest.fail("no rows for a file that does not stream")) is None
        )


def test_a_damaged_png_streams_its_good_rows_then_says_it_is_damaged(tmp_path: Path) -> None:
    pytest.importorskip("pyvips", reason="pyvips (the optional 'big' extra) is not installed")
    path, _ = _png(tmp_path, height=2000, width=300)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    rows: list[int] = []
    with pytest.raises(images.ImageError, match="not a readable image"):
        images.stream_image(path, 2, lambda _p, r: rows.append(r) is None)
    assert rows and rows[-1] < 1000

"""Tile pyramids for gigapixel images: region reads, the cache beside the project, bad files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

pyvips = pytest.importorskip("pyvips")

from tile_support import HEIGHT, WIDTH, pattern, write_pattern_tiff  # noqa: E402

from labeler.core import tiles  # noqa: E402
from labeler.core.images import ImageError, read_image_size  # noqa: E402
from labeler.core.tiles import (  # noqa: E402
    TILE,
    Level,
    level_for_zoom,
    open_pyramid,
    pyramid_cache_dir,
    pyramid_info,
    tiles_in_rect,
)


@pytest.fixture(scope="module")
def big_tiff(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("giga") / "slide.tif"
    write_pattern_tiff(path)
    return path


def test_a_big_tiled_tiff_is_read_through_tiles_and_small_images_are_not(big_tiff: Path, tmp_path: Path) -> None:
    info = pyramid_info(big_tiff)
    assert info is not None and info.tiled and (info.width, info.height) == (WIDTH, HEIGHT)
    small = tmp_path / "small.png"
    pyvips.Image.black(600, 400, bands=3).pngsave(os.fspath(small))
    assert pyramid_info(small) is None
    assert pyramid_info(small, above_pixels=100_000) is not None  # the threshold is a parameter
    tiled_small = tmp_path / "tiled_small.tif"
    write_pattern_tiff(tiled_small, 3000, 2000)
    assert pyramid_info(tiled_small) is None  # a tiled TIFF this small decodes whole quickly


def test_without_pyvips_big_images_are_read_as_before(big_tiff: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyvips", None)  # as where the optional `big` extra is not installed
    assert not tiles.pyvips_available()
    assert pyramid_info(big_tiff) is None  # decoded whole (within the pixel limit), as before
    assert read_image_size(big_tiff) == (WIDTH, HEIGHT)
    with pytest.raises(ImageError, match=r"pip install 'labeler\[big\]'"):
        open_pyramid(big_tiff, big_tiff.parent / ".tiles")


def test_region_reads_match_the_true_pixels_at_every_level(big_tiff: Path, tmp_path: Path) -> None:
    pyramid = open_pyramid(big_tiff, tmp_path / "cache")
    assert pyramid.size == (WIDTH, HEIGHT)
    assert [(lv.width, lv.height) for lv in pyramid.levels[:4]] == [
        (12000, 9000),
        (6000, 4500),
        (3000, 2250),
        (1500, 1125),
    ]
    assert max(pyramid.levels[-1].width, pyramid.levels[-1].height) <= TILE
    # Level 0 comes from the tiled file itself: exact, anywhere, across tile edges and at the corner.
    for x, y, w, h in [(0, 0, 300, 200), (5_000, 4_000, 700, 513), (WIDTH - 37, HEIGHT - 5, 37, 5)]:
        assert np.array_equal(pyramid.read_region(0, x, y, w, h), pattern(x, y, w, h))
    # Coarser levels are the 2**k x 2**k means, JPEG-compressed in the cache (visually lossless).
    for k in (1, 2, 3):
        s, (x, y, w, h) = 2**k, (100, 200, 256, 128)
        got = pyramid.read_region(k, x, y, w, h).astype(np.float64)
        true = pattern(x * s, y * s, w * s, h * s).astype(np.float64).reshape(h, s, w, s, 3).mean(axis=(1, 3))
        assert np.abs(got - true).mean() < 1.5 and np.abs(got - true).max() < 16
    cols, rows = pyramid.levels[0].grid()
    corner = pyramid.read_tile(0, cols - 1, rows - 1)  # edge tiles are cut at the image's edge
    assert corner.shape == (HEIGHT - (rows - 1) * TILE, WIDTH - (cols - 1) * TILE, 3)
    assert np.array_equal(corner, pattern((cols - 1) * TILE, (rows - 1) * TILE, corner.shape[1], corner.shape[0]))
    with pytest.raises(ValueError, match="not within level"):
        pyramid.read_tile(0, cols, 0)
    with pytest.raises(ValueError, match="level 9"):
        pyramid.read_region(9, 0, 0, 1, 1)


def test_the_cache_lives_beside_the_project_and_is_reused(big_tiff: Path, tmp_path: Path, monkeypatch) -> None:
    cache = pyramid_cache_dir(tmp_path / "project")
    assert cache == tmp_path / "project" / ".tiles"  # hidden: image listings skip it
    builds: list[Path] = []
    real_build = tiles.build_pyramid

    def counting_build(source: Path, target: Path, **kwargs) -> None:
        builds.append(target)
        real_build(source, target, **kwargs)

    monkeypatch.setattr(tiles, "build_pyramid", counting_build)
    percents: list[int] = []
    first = open_pyramid(big_tiff, cache, progress=percents.append)
    assert len(builds) == 1 and percents and max(percents) == 100
    (cached,) = cache.iterdir()
    assert cached == first.cache and cached.name == tiles.cache_name(big_tiff)
    stamp = cached.stat().st_mtime_ns
    second = open_pyramid(big_tiff, cache)
    assert len(builds) == 1 and second.cache == cached and cached.stat().st_mtime_ns == stamp
    assert np.array_equal(second.read_region(2, 10, 10, 50, 50), first.read_region(2, 10, 10, 50, 50))


def test_a_changed_file_gets_a_new_pyramid_and_the_old_one_goes(tmp_path: Path) -> None:
    source, cache = tmp_path / "slide.tif", tmp_path / ".tiles"
    write_pattern_tiff(source, 5000, 3000)
    before = open_pyramid(source, cache)
    old_coarse = before.read_region(1, 0, 0, 400, 300)
    assert np.array_equal(before.read_region(0, 0, 0, 64, 64), pattern(0, 0, 64, 64))
    write_pattern_tiff(source, 5000, 3000, shift=40)  # new pixels (and a new size or mtime)
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # even within one mtime tick
    after = open_pyramid(source, cache)
    assert after.cache != before.cache
    assert [p.name for p in cache.iterdir()] == [after.cache.name]  # the stale pyramid is removed
    assert np.array_equal(after.read_region(0, 0, 0, 64, 64), pattern(40, 0, 64, 64))
    new_coarse = after.read_region(1, 0, 0, 400, 300)
    assert np.abs(new_coarse.astype(int) - old_coarse.astype(int)).mean() > 10  # the cached levels too


_KILLED_BUILD = """
import sys, time
from labeler.core.tiles import open_pyramid

def stall(percent):
    if percent >= 20:
        print("stalled", flush=True)
        time.sleep(120)  # killed here, half-way through writing the pyramid

open_pyramid(sys.argv[1], sys.argv[2], progress=stall)
"""


def test_a_pyramid_half_built_by_a_killed_run_is_never_used(tmp_path: Path) -> None:
    source, cache = tmp_path / "photo.jpg", tmp_path / ".tiles"
    noise = pyvips.Image.gaussnoise(4000, 3000, mean=128, sigma=50).cast("uchar")
    noise.bandjoin([noise, noise]).jpegsave(os.fspath(source), Q=90)
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_BUILD, os.fspath(source), os.fspath(cache)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "stalled"
        (part,) = cache.iterdir()
        assert ".part-" in part.name and part.stat().st_size > 0
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        if child.stdout is not None:
            child.stdout.close()
    assert not (cache / tiles.cache_name(source)).exists()  # nothing under the final name
    pyramid = open_pyramid(source, cache)  # built again from the start, the dead run's part removed
    assert [p.name for p in cache.iterdir()] == [tiles.cache_name(source)]
    truth = pyvips.Image.new_from_file(os.fspath(source)).crop(1000, 1000, 64, 64).numpy().astype(np.float64)
    got = pyramid.read_region(0, 1000, 1000, 64, 64).astype(np.float64)  # the JPEG's full size, cached
    assert np.abs(got - truth).mean() < 8


def test_two_builds_of_one_image_at_once_do_not_spoil_each_other(tmp_path: Path) -> None:
    source, cache = tmp_path / "slide.tif", tmp_path / ".tiles"
    write_pattern_tiff(source, 5000, 3000)
    results: list[object] = []

    def build() -> None:
        try:
            results.append(open_pyramid(source, cache))
        except ImageError as exc:  # pragma: no cover - what this test rules out
            results.append(exc)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 2 and all(isinstance(r, tiles.TilePyramid) for r in results)
    assert [p.name for p in cache.iterdir()] == [tiles.cache_name(source)]


def test_an_unreadable_cached_pyramid_is_rebuilt(tmp_path: Path) -> None:
    source, cache = tmp_path / "slide.tif", tmp_path / ".tiles"
    write_pattern_tiff(source, 5000, 3000)
    target = open_pyramid(source, cache).cache
    target.write_bytes(target.read_bytes()[:5000])  # a disk error, a hand edit
    pyramid = open_pyramid(source, cache)
    assert pyramid.cache == target and target.stat().st_size > 5000
    assert pyramid.read_region(3, 0, 0, 100, 100).shape == (100, 100, 3)


def test_a_build_can_be_cancelled_and_leaves_nothing(tmp_path: Path) -> None:
    source, cache = tmp_path / "slide.tif", tmp_path / ".tiles"
    write_pattern_tiff(source, 6000, 4000)
    cancel = threading.Event()

    def on_progress(percent: int) -> None:
        if percent >= 10:
            cancel.set()

    with pytest.raises(ImageError, match="cancelled"):
        open_pyramid(source, cache, progress=on_progress, cancel=cancel)
    assert list(cache.iterdir()) == []


def test_corrupt_and_missing_files_raise_image_errors(tmp_path: Path) -> None:
    cache = tmp_path / ".tiles"
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"II*\x00" + os.urandom(4000))
    truncated = tmp_path / "truncated.jpg"
    noise = pyvips.Image.gaussnoise(3000, 2000, mean=128, sigma=50).cast("uchar")
    data = noise.bandjoin([noise, noise]).jpegsave_buffer(Q=90)
    truncated.write_bytes(data[: len(data) // 3])
    for bad in (garbage, truncated, tmp_path / "missing.tif"):
        with pytest.raises(ImageError) as raised:
            open_pyramid(bad, cache)
        assert bad.name in str(raised.value)
    assert not cache.exists() or not any(cache.iterdir())  # no pyramid, and no part file left
    bomb = tmp_path / "bomb.png"
    pyvips.Image.black(20, 20).pngsave(os.fspath(bomb))
    data = bytearray(bomb.read_bytes())
    data[16:24] = (200_000).to_bytes(4, "big") * 2  # the header says 200,000 x 200,000
    bomb.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="over the limit"):
        open_pyramid(bomb, cache)


def test_sizes_of_images_over_pillows_bomb_guard_come_from_libvips(tmp_path: Path) -> None:
    path = tmp_path / "huge.jpg"
    pyvips.Image.black(16_000, 12_000, bands=3).jpegsave(os.fspath(path))  # 192 MP: Pillow refuses to open it
    assert read_image_size(path) == (16_000, 12_000)
    info = pyramid_info(path)
    assert info is not None and not info.tiled and info.loader == "jpegload"


def test_the_level_for_a_zoom_and_the_tiles_of_a_view() -> None:
    levels = tuple(Level(k, 2**k, 40_000 // 2**k, 30_000 // 2**k) for k in range(9))
    assert level_for_zoom(levels, 1.0) == 0 and level_for_zoom(levels, 4.0) == 0
    assert level_for_zoom(levels, 0.5) == 1 and level_for_zoom(levels, 0.3) == 2
    assert level_for_zoom(levels, 0.001) == 8  # zoomed far out: the coarsest level
    lv = levels[2]  # 1 tile = 1024 full-resolution pixels
    found = tiles_in_rect(lv, 1000, 0, 3100, 1024)
    assert sorted(found) == [(0, 0), (1, 0), (2, 0), (3, 0)]
    assert found[0] in ((1, 0), (2, 0))  # the centre first
    assert tiles_in_rect(lv, -5000, -5000, -1, -1) == []
    cols, rows = lv.grid()
    assert len(tiles_in_rect(lv, 0, 0, 40_000, 30_000)) == cols * rows


def test_a_thumbnail_of_a_big_image_is_shrunk_while_streaming(big_tiff: Path) -> None:
    small = tiles.thumbnail(big_tiff, 48)
    assert small.shape == (36, 48, 3) and small.dtype == np.uint8
    block = pattern(0, 0, 250, 250).astype(np.float64).mean(axis=(0, 1))  # what its first pixel covers
    assert np.abs(small[0, 0].astype(np.float64) - block).max() < 40


def test_clearing_the_cache(big_tiff: Path, tmp_path: Path) -> None:
    cache = tmp_path / ".tiles"
    open_pyramid(big_tiff, cache)
    (cache / "junk.tif.part-999999999").write_bytes(b"x")  # a dead writer's leftovers
    assert tiles.clear_cache(cache) == 2 and list(cache.iterdir()) == []
    assert tiles.clear_cache(tmp_path / "none") == 0

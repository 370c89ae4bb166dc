"""Gigapixel images on the canvas: tiles of the level the zoom needs, read off the UI thread."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pyvips = pytest.importorskip("pyvips")

from gui_helpers import CanvasEnv, Ticker, close_canvas, drag, make_project, open_canvas  # noqa: E402
from PySide6.QtCore import QPointF  # noqa: E402
from PySide6.QtGui import QImage  # noqa: E402
from pytestqt.qtbot import QtBot  # noqa: E402
from tile_support import HEIGHT, WIDTH, pattern, write_pattern_tiff  # noqa: E402

from labeler.core import tiles  # noqa: E402
from labeler.core.annotation import Kind  # noqa: E402
from labeler.core.tiles import TilePyramid, pyramid_cache_dir  # noqa: E402
from labeler.gui.canvas import AnnotationCanvas  # noqa: E402
from labeler.gui.canvas.tiled_layer import TileCache  # noqa: E402

BACKGROUND = (48, 48, 48)


def show(qtbot: QtBot, canvas: AnnotationCanvas, image_id: int) -> None:
    """Show ``image_id`` on ``canvas`` and wait until it is shown (its pyramid may be built first)."""
    with qtbot.waitSignal(canvas.imageShown, timeout=60_000):
        canvas.show_image(image_id)


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("slide") / "slide.tif"
    write_pattern_tiff(path)
    return path


@pytest.fixture
def giga(qtbot: QtBot, backend, tmp_path: Path, slide: Path) -> Iterator[tuple[CanvasEnv, int]]:
    """A canvas on a small project plus a 12,000 x 9,000 tiled TIFF (its pyramid not yet built)."""
    project = make_project(backend, tmp_path, images=1)
    (image_id,) = project.add_images([slide])
    env = open_canvas(qtbot, project, 1, size=(640, 480))
    yield env, image_id
    close_canvas(env)


def _wait_for_tiles(qtbot: QtBot, canvas: AnnotationCanvas) -> None:
    """Paint, then wait until every tile the view asked for is read and painted."""
    layer = canvas.tiled_layer()
    canvas.view().viewport().grab()
    qtbot.waitUntil(lambda: layer.loader().pending() == 0, timeout=20_000)


def _screen(canvas: AnnotationCanvas) -> np.ndarray:
    """The viewport as ``(h, w, 3)`` RGB."""
    image = canvas.view().viewport().grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    h, w = image.height(), image.width()
    data = np.frombuffer(image.constBits(), dtype=np.uint8, count=image.bytesPerLine() * h)
    return data.reshape(h, image.bytesPerLine())[:, : w * 3].reshape(h, w, 3).copy()


def _scene_origin(canvas: AnnotationCanvas) -> tuple[int, int]:
    top_left = canvas.view().mapToScene(0, 0)
    return int(np.floor(top_left.x())), int(np.floor(top_left.y()))


def test_a_gigapixel_image_opens_by_tiles_and_pans_while_a_20_ms_timer_ticks(
    qtbot: QtBot, giga: tuple[CanvasEnv, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    env, image_id = giga
    canvas = env.canvas
    readers: list[threading.Thread] = []
    real_read = TilePyramid.read_region

    def recorded_read(self: TilePyramid, *args: int) -> np.ndarray:
        readers.append(threading.current_thread())
        return real_read(self, *args)

    monkeypatch.setattr(TilePyramid, "read_region", recorded_read)
    notices: list[str] = []
    canvas._loader_signals.progress.connect(lambda *_: notices.append(canvas.view().notice()))
    ticker = Ticker()
    show(qtbot, canvas, image_id)  # the pyramid is built meanwhile
    assert notices and notices[-1].startswith("Preparing the tiles of this 12,000 x 9,000 image")
    assert canvas.view().notice() == ""
    assert canvas.image_size() == (WIDTH, HEIGHT)
    layer = canvas.tiled_layer()
    pyramid = layer.pyramid()
    assert pyramid is not None and pyramid.cache.parent == pyramid_cache_dir(env.project.root)
    assert canvas.image_resolution() == 8  # the overview under the tiles: 1500 x 1125, 32-bit
    assert canvas._image_layer.level_bytes() == 1500 * 1125 * 4
    fitted = _screen(canvas)
    assert (fitted != BACKGROUND).any(axis=2).mean() > 0.5  # pixels are shown
    # 1:1 somewhere in the middle, then pans: each view gets its tiles, read in pool threads.
    canvas.zoom_actual_size()
    canvas.view().centerOn(QPointF(5000, 4000))
    for step in range(6):
        _wait_for_tiles(qtbot, canvas)
        canvas.view().pan_by(-300, -170 if step % 2 else 170)
    _wait_for_tiles(qtbot, canvas)
    elapsed = ticker.stop()
    print(f"{ticker.ticks} ticks in {elapsed:.2f} s, longest gap {ticker.longest_gap * 1000:.0f} ms")
    assert ticker.ticks >= 0.2 * elapsed / 0.02 and ticker.longest_gap < 2.0  # a loaded CI box still ticks
    assert readers and threading.main_thread() not in readers
    assert len(layer.cache()) > 0 and layer.last_error() is None
    # What is on screen at 1:1 is the file's own pixels.
    shown = _screen(canvas)
    x0, y0 = _scene_origin(canvas)
    h, w = shown.shape[:2]
    assert np.array_equal(shown[8 : h - 8, 8 : w - 8], pattern(x0 + 8, y0 + 8, w - 16, h - 16))


def test_each_zoom_shows_the_level_that_matches_it(qtbot: QtBot, giga: tuple[CanvasEnv, int]) -> None:
    env, image_id = giga
    canvas = env.canvas
    show(qtbot, canvas, image_id)
    view = canvas.view()
    for zoom in (0.5, 1.0, 2.0):
        view.resetTransform()
        view.scale(zoom, zoom)
        view.centerOn(QPointF(7001, 3001))
        _wait_for_tiles(qtbot, canvas)
        shown = _screen(canvas).astype(np.float64)[100:300, 100:400]
        top_left = view.mapToScene(100, 100)
        span = 1.0 / zoom  # scene pixels per screen pixel
        x0, y0 = int(np.floor(top_left.x())), int(np.floor(top_left.y()))
        truth = pattern(x0, y0, int(300 * span) + 2, int(200 * span) + 2).astype(np.float64)
        if zoom >= 1:
            rows = (np.arange(200) * span + (top_left.y() - y0)).astype(int)
            cols = (np.arange(300) * span + (top_left.x() - x0)).astype(int)
            expected = truth[rows][:, cols]
        else:
            k = round(span)
            expected = truth[: 200 * k, : 300 * k].reshape(200, k, 300, k, 3).mean(axis=(1, 3))
        assert np.abs(shown - expected).mean() < (2.0 if zoom >= 1 else 8.0), zoom
    levels = {key[0] for key in canvas.tiled_layer().cache()._tiles}
    assert levels == {0, 1}  # 1:1 and 2:1 from the full resolution, 1:2 from level 1


def test_a_coarser_level_shows_while_the_tiles_load_and_paint_never_waits(
    qtbot: QtBot, giga: tuple[CanvasEnv, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    env, image_id = giga
    canvas = env.canvas
    show(qtbot, canvas, image_id)
    gate = threading.Event()
    real_read = TilePyramid.read_tile

    def held_read(self: TilePyramid, *args: int) -> np.ndarray:
        gate.wait(30)
        return real_read(self, *args)

    monkeypatch.setattr(TilePyramid, "read_tile", held_read)
    try:
        canvas.zoom_actual_size()
        canvas.view().centerOn(QPointF(6000, 4500))
        started = time.monotonic()
        coarse = _screen(canvas)  # tiles are being read (and held): paint draws what it has
        assert time.monotonic() - started < 5.0
        assert canvas.tiled_layer().loader().pending() > 0 and len(canvas.tiled_layer().cache()) == 0
        assert (coarse != BACKGROUND).any(axis=2).all()  # the overview covers the whole view
        canvas.fit_to_window()
        _screen(canvas)
        assert canvas.tiled_layer().loader().pending() <= 2  # the queue is dropped; two reads are held
        canvas.zoom_actual_size()
        canvas.view().centerOn(QPointF(6000, 4500))
    finally:
        gate.set()
    _wait_for_tiles(qtbot, canvas)
    sharp = _screen(canvas)
    x0, y0 = _scene_origin(canvas)
    truth = pattern(x0, y0, sharp.shape[1], sharp.shape[0])
    assert np.abs(sharp.astype(int) - truth).mean() < np.abs(coarse.astype(int) - truth).mean() / 4


def test_labels_are_drawn_in_full_resolution_pixels(qtbot: QtBot, giga: tuple[CanvasEnv, int]) -> None:
    env, image_id = giga
    canvas = env.canvas
    show(qtbot, canvas, image_id)
    canvas.zoom_actual_size()
    canvas.view().centerOn(QPointF(9050, 7040))
    canvas.set_tool("box")
    drag(canvas, [(9000, 7000), (9050, 7040), (9100, 7080)])
    (box,) = [a for a in env.project.annotations(image_id) if a.kind is Kind.BOX]
    assert box.box_xywh == pytest.approx((9000, 7000, 100, 80), abs=1.0)
    assert env.project.image_size(image_id) == (WIDTH, HEIGHT)


def test_the_assisted_tools_read_a_gigapixel_image_at_their_working_resolution(
    qtbot: QtBot, giga: tuple[CanvasEnv, int]
) -> None:
    # not the small overview the canvas keeps: a box of 200 x 150 pixels is worked at full resolution
    from labeler.assist import PyramidPixels, box_window, read_window

    env, image_id = giga
    canvas = env.canvas
    show(qtbot, canvas, image_id)
    source = canvas.image_pixels()
    assert isinstance(source, PyramidPixels) and source.size == (WIDTH, HEIGHT)
    window = box_window((5000, 4000, 200, 150), source.size)
    assert window.scale == 1.0
    seen = read_window(source, window)
    assert np.array_equal(seen, pattern(window.x0, window.y0, window.width, window.height))


def test_mask_tools_say_no_on_an_image_over_the_mask_limit(
    qtbot: QtBot, giga: tuple[CanvasEnv, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    env, image_id = giga
    canvas = env.canvas
    show(qtbot, canvas, image_id)
    monkeypatch.setenv("LABELER_MAX_PIXELS", "100000000")  # 108 MP is over it, as 1.6 GP is over 400 MP
    canvas.zoom_actual_size()
    canvas.view().centerOn(QPointF(6000, 4500))
    for tool in ("brush", "assist"):
        canvas.set_tool(tool)
        with qtbot.waitSignal(canvas.errorOccurred, timeout=2_000) as said:
            drag(canvas, [(5950, 4450), (6000, 4500), (6050, 4550)])
        assert "No masks on this 12,000 x 9,000 image" in said.args[0]
    assert env.project.annotations(image_id) == []
    canvas.set_tool("polygon")  # other labels are fine


def test_a_big_file_that_cannot_be_tiled_says_why(
    qtbot: QtBot, backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tiles, "PYRAMID_ABOVE_PIXELS", 1_000_000)  # "big" from 1 MP: a small file will do
    project = make_project(backend, tmp_path, images=1)
    broken = tmp_path / "broken.jpg"
    data = pyvips.Image.gaussnoise(2_000, 1_500).cast("uchar").jpegsave_buffer(Q=50)
    broken.write_bytes(data[: len(data) // 3])  # the header is fine, the pixels stop a third of the way
    (image_id,) = project.add_images([broken])
    env = open_canvas(qtbot, project, 1)
    try:
        canvas = env.canvas
        with qtbot.waitSignal(canvas.errorOccurred, timeout=60_000) as blocker:
            canvas.show_image(image_id)
        assert "broken.jpg" in blocker.args[0]
        assert canvas.load_error() and "cannot be shown" in canvas.view().notice()
        assert canvas.tiled_layer().pyramid() is None
        assert not any(pyramid_cache_dir(project.root).glob("*"))  # nothing half-built is kept
    finally:
        close_canvas(env)


def test_the_tile_cache_is_bounded_in_bytes() -> None:
    cache = TileCache(max_bytes=3 * 256 * 256 * 4)
    tile = np.zeros((256, 256, 4), np.uint8)
    for col in range(3):
        cache.put((0, col, 0), tile.copy())
    assert cache.get((0, 0, 0)) is not None  # used: now the most recent
    cache.put((0, 3, 0), tile.copy())
    assert len(cache) == 3 and cache.nbytes == 3 * tile.nbytes
    assert (0, 1, 0) not in cache and (0, 0, 0) in cache and (0, 3, 0) in cache
    image = cache.get((0, 3, 0))
    assert image is not None and (image.width(), image.height()) == (256, 256)
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0


def test_panning_far_keeps_the_tile_cache_within_its_bound(qtbot: QtBot, giga: tuple[CanvasEnv, int]) -> None:
    env, image_id = giga
    canvas = env.canvas
    show(qtbot, canvas, image_id)
    cache = canvas.tiled_layer().cache()
    cache.max_bytes = 24 * 256 * 256 * 4  # a 640 x 480 view needs at most 12 tiles
    canvas.zoom_actual_size()
    for x in range(1000, 11_000, 1500):
        canvas.view().centerOn(QPointF(x, 4000))
        _wait_for_tiles(qtbot, canvas)
        assert cache.nbytes <= cache.max_bytes
    assert len(cache) == 24
    shown = _screen(canvas)
    x0, y0 = _scene_origin(canvas)
    assert np.array_equal(shown[4:-4, 4:-4], pattern(x0 + 4, y0 + 4, shown.shape[1] - 8, shown.shape[0] - 8))


def test_the_cache_is_reused_when_the_image_is_shown_again(qtbot: QtBot, giga: tuple[CanvasEnv, int]) -> None:
    env, image_id = giga
    canvas = env.canvas
    show(qtbot, canvas, image_id)
    pyramid = canvas.tiled_layer().pyramid()
    assert pyramid is not None
    stamp = pyramid.cache.stat().st_mtime_ns
    with qtbot.waitSignal(canvas.imageShown, timeout=10_000):
        canvas.show_image(1)
    assert canvas.tiled_layer().pyramid() is None  # an ordinary image: no tiles
    with qtbot.waitSignal(canvas.imageShown, timeout=10_000):
        canvas.show_image(image_id)
    again = canvas.tiled_layer().pyramid()
    assert again is not None and again.cache == pyramid.cache and again.cache.stat().st_mtime_ns == stamp
    assert os.path.getsize(again.cache) > 0


def test_moving_on_while_the_pyramid_is_built_cancels_the_build(qtbot: QtBot, giga: tuple[CanvasEnv, int]) -> None:
    env, image_id = giga
    canvas = env.canvas
    started = threading.Event()
    canvas._loader_signals.progress.connect(lambda *_: started.set())
    canvas.show_image(image_id)
    qtbot.waitUntil(started.is_set, timeout=30_000)
    with qtbot.waitSignal(canvas.imageShown, timeout=10_000):
        canvas.show_image(1)  # the user moved on: the build stops
    assert canvas.wait_for_loads(30_000)
    assert canvas.current_image_id() == 1 and canvas.tiled_layer().pyramid() is None
    cache = pyramid_cache_dir(env.project.root)
    assert not cache.exists() or not any(cache.iterdir())  # neither a pyramid nor a part file

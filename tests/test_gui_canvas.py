"""The canvas view: loading images off the UI thread, zoom, pan, layers, threshold, proposals' look."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from annotation_support import proposal
from gui_helpers import CanvasEnv, close_canvas, drag, hover, key, make_project, open_canvas, vp
from PIL import Image
from PySide6.QtCore import QPoint, QPointF, Qt, QTimer
from PySide6.QtGui import QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from labeler.core.annotation import Annotation, Kind, State
from labeler.core.geometry import decode_rle, encode_mask
from labeler.core.store import ModelVersion, Project
from labeler.gui.canvas import AnnotationCanvas
from labeler.gui.canvas.image_layer import preview_reduction
from labeler.gui.canvas.items import BoxItem


@pytest.fixture
def env(qtbot: QtBot, backend, tmp_path: Path) -> Iterator[CanvasEnv]:
    e = open_canvas(qtbot, make_project(backend, tmp_path))
    yield e
    close_canvas(e)


def _wheel(canvas: AnnotationCanvas, at: QPoint, notches: int) -> None:
    viewport = canvas.view().viewport()
    event = QWheelEvent(
        QPointF(at),
        QPointF(viewport.mapToGlobal(at)),
        QPoint(0, 0),
        QPoint(0, 120 * notches),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(viewport, event)


def _add_proposals(project: Project) -> dict[str, Annotation]:
    version = project.add_model_version(ModelVersion(plugin="seg", settings={}, categories=(1, 2), checkpoint="m"))
    mask = np.zeros((240, 320), dtype=bool)
    mask[150:200, 200:300] = True
    anns = {
        "strong_box": proposal(1, 1, version=version.id, score=0.9, box_xywh=(10, 10, 50, 40)),
        "weak_box": proposal(1, 2, version=version.id, score=0.3, box_xywh=(100, 20, 40, 40)),
        "mask": proposal(1, 2, version=version.id, score=0.6, rle=encode_mask(mask)),
        "human_box": Annotation(image_id=1, category_id=3, kind=Kind.BOX, box_xywh=(200, 10, 60, 60)),
        "human_polygon": Annotation(
            image_id=1,
            category_id=1,
            kind=Kind.POLYGON,
            polygons=(np.array([[20, 120], [80, 120], [50, 200]], dtype=float),),
        ),
    }
    return {k: project.add_annotation(a) for k, a in anns.items()}


def _visible(canvas: AnnotationCanvas) -> set[int]:
    return {i.ann.id for i in canvas.visible_items()}


def test_image_is_shown_fitted(env: CanvasEnv) -> None:
    canvas = env.canvas
    assert canvas.current_image_id() == 1
    assert canvas.image_size() == (320, 240)
    assert canvas.image_resolution() == 1  # small image: straight to full size
    assert canvas.view().scale_factor() == pytest.approx(2.0, rel=0.02)  # 640x480 window, 320x240 image
    assert env.project.image(1).width == 320  # the worker recorded the size in the store


def test_wheel_zooms_around_the_cursor(env: CanvasEnv) -> None:
    canvas = env.canvas
    at = vp(canvas, 80, 60)
    before = canvas.view().mapToScene(at)
    scale = canvas.view().scale_factor()
    _wheel(canvas, at, 2)
    assert canvas.view().scale_factor() == pytest.approx(scale * 1.25**2, rel=1e-3)
    after = canvas.view().mapToScene(at)
    assert abs(after.x() - before.x()) < 1.0 and abs(after.y() - before.y()) < 1.0
    _wheel(canvas, at, -2)
    assert canvas.view().scale_factor() == pytest.approx(scale, rel=1e-3)


def test_fit_and_actual_size(env: CanvasEnv) -> None:
    canvas = env.canvas
    with_signal = []
    canvas.zoomChanged.connect(with_signal.append)
    canvas.zoom_actual_size()
    assert canvas.view().scale_factor() == pytest.approx(1.0)
    canvas.fit_to_window()
    assert canvas.view().scale_factor() == pytest.approx(2.0, rel=0.02)
    _wheel(canvas, vp(canvas, 10, 10), 3)
    key(canvas, Qt.Key.Key_F)
    assert canvas.view().scale_factor() == pytest.approx(2.0, rel=0.02)
    assert with_signal[0] == pytest.approx(1.0)


def test_middle_button_and_space_drag_pan(env: CanvasEnv) -> None:
    canvas = env.canvas
    view = canvas.view()
    centre = view.viewport().rect().center()
    start = view.mapToScene(centre)
    scale = view.scale_factor()
    viewport = view.viewport()
    QTest.mousePress(viewport, Qt.MouseButton.MiddleButton, Qt.KeyboardModifier.NoModifier, centre)
    QTest.mouseMove(viewport, centre + QPoint(40, 20))
    QTest.mouseRelease(viewport, Qt.MouseButton.MiddleButton, Qt.KeyboardModifier.NoModifier, centre + QPoint(40, 20))
    moved = view.mapToScene(centre)
    assert moved.x() == pytest.approx(start.x() - 40 / scale, abs=1.0)
    assert moved.y() == pytest.approx(start.y() - 20 / scale, abs=1.0)
    # Space + left drag pans too, and draws nothing even with the box tool.
    canvas.set_tool("box")
    QTest.keyPress(view, Qt.Key.Key_Space)
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, centre)
    QTest.mouseMove(viewport, centre + QPoint(-30, 10))
    QTest.mouseMove(viewport, centre + QPoint(-60, 20))
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, centre + QPoint(-60, 20))
    QTest.keyRelease(view, Qt.Key.Key_Space)
    assert env.project.annotations(1) == []
    again = view.mapToScene(centre)
    assert again.x() == pytest.approx(moved.x() + 60 / scale, abs=1.0)
    assert again.y() == pytest.approx(moved.y() - 20 / scale, abs=1.0)
    # Without space the box tool draws again.
    drag(canvas, [(100, 100), (120, 110), (140, 120)])
    assert len(env.project.annotations(1)) == 1


def test_corrupt_image_reports_an_error(qtbot: QtBot, env: CanvasEnv) -> None:
    canvas = env.canvas
    path = env.project.image_path(2)
    path.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    with qtbot.waitSignal(canvas.errorOccurred, timeout=10_000) as blocker:
        canvas.show_image(2)
    assert "img1.png" in blocker.args[0] and "not a readable image" in blocker.args[0]
    assert canvas.image_resolution() is None and canvas.annotation_items() == {}
    canvas.set_tool("box")
    drag(canvas, [(10, 10), (50, 50)])  # nothing to draw on: ignored, no exception
    assert env.project.annotations(2) == []
    with qtbot.waitSignal(canvas.imageShown, timeout=10_000):
        canvas.show_image(1)  # and the canvas still works
    assert canvas.image_size() == (320, 240)


def test_missing_file_reports_an_error(qtbot: QtBot, env: CanvasEnv) -> None:
    env.project.image_path(2).unlink()
    with qtbot.waitSignal(env.canvas.errorOccurred, timeout=10_000) as blocker:
        env.canvas.show_image(2)
    assert "no such file" in blocker.args[0]


def test_big_image_shows_a_reduced_version_first(qtbot: QtBot, backend, tmp_path: Path) -> None:
    assert preview_reduction(4000, 4000) == 4 and preview_reduction(8000, 6000) == 8
    assert preview_reduction(1024, 768) == 1
    project = make_project(backend, tmp_path, images=1)
    big = tmp_path / "big.jpg"
    rng = np.random.default_rng(1)
    tile = rng.integers(0, 255, (500, 500, 3), dtype=np.uint8)
    Image.fromarray(np.tile(tile, (8, 8, 1))).save(big, quality=80)
    (image_id,) = project.add_images([big])
    e = open_canvas(qtbot, project, 1)
    try:
        canvas = e.canvas
        levels: list[int] = []
        shown_at: list[int | None] = []
        canvas.resolutionChanged.connect(levels.append)
        canvas.imageShown.connect(lambda _i: shown_at.append(canvas.image_resolution()))
        with qtbot.waitSignal(canvas.imageShown, timeout=30_000):
            canvas.show_image(image_id)
        assert levels == [4]
        assert shown_at == [4]  # the first pixels on screen were the 1/4 level, enough at fit
        assert canvas.image_size() == (4000, 4000)
        assert canvas.view().scale_factor() == pytest.approx(480 / 4000, rel=0.02)
        assert canvas._image_layer.level_bytes() == 1000 * 1000 * 4  # nothing at full size yet
        pixmap = canvas.view().viewport().grab()  # paints the reduced level; needs nothing finer
        assert not pixmap.isNull() and canvas._requested is None
        # The brush paints a full-resolution mask while only the reduced level is shown.
        canvas.set_tool("brush")
        canvas.set_brush_size(40)
        drag(canvas, [(1000, 2000), (1400, 2000)])
        (mask,) = [a for a in project.annotations(image_id) if a.kind is Kind.MASK]
        assert mask.rle["size"] == [4000, 4000]
        pixels = decode_rle(mask.rle)
        assert pixels[2000, 1200] and not pixels[2100, 1200] and not pixels[2000, 1600]
        assert canvas.image_resolution() == 4
        canvas.set_tool("select")
        # Zooming in to 1:1 decodes the full resolution (in a worker) and keeps one copy of it.
        with qtbot.waitSignal(canvas.resolutionChanged, timeout=30_000, check_params_cb=lambda r: r == 1):
            canvas.zoom_actual_size()
        assert canvas._image_layer.reductions() == [1, 4]
        # One full-size copy: 32-bit pixels straight from the decoder (decode_jpeg_rgbx) + the small level.
        assert canvas._image_layer.level_bytes() == 4000 * 4000 * 4 + 1000 * 1000 * 4
        assert not canvas.view().viewport().grab().isNull()
        # Back to fit: the full-size pixels are freed, the small level stays.
        with qtbot.waitSignal(canvas.resolutionChanged, timeout=1000, check_params_cb=lambda r: r == 4):
            canvas.fit_to_window()
        assert canvas._image_layer.reductions() == [4]
        assert levels == [4, 1, 4]
    finally:
        close_canvas(e)


def test_a_big_png_shows_its_top_while_the_rest_streams_in(
    qtbot: QtBot, backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PNG is inflated row after row: its first level is on screen at the first band of rows,
    the tools wait for the whole level, and another image shown meanwhile gets no stale rows."""
    pytest.importorskip("pyvips", reason="pyvips (the optional 'big' extra) is not installed")
    import labeler.core.images as images

    monkeypatch.setattr(images, "FIRST_BAND_ROWS", 16)
    monkeypatch.setattr(images, "BAND_ROWS", 64)
    project = make_project(backend, tmp_path, images=1)
    y, x = np.ogrid[0:3000, 0:4000]
    rgb = np.empty((3000, 4000, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = x % 256, y % 256, (x // 16 + y // 16) % 256
    big = tmp_path / "big.png"
    Image.fromarray(rgb).save(big, compress_level=1)
    (image_id,) = project.add_images([big])
    import labeler.gui.canvas.image_layer as image_layer

    ticked = threading.Event()
    pacing = threading.Event()  # while set, each band waits for the UI thread's next tick
    pacing.set()
    waits: list[bool] = []

    def stream_waiting_for_the_ui(path, reduce, on_rows, **kwargs):  # each band waits for a tick of the UI thread
        def handed(pixels: np.ndarray, rows: int) -> bool:
            go_on = on_rows(pixels, rows)
            ticked.clear()
            deadline = time.monotonic() + 10
            while pacing.is_set() and not ticked.wait(0.05) and time.monotonic() < deadline:
                pass
            if pacing.is_set():
                waits.append(ticked.is_set())
            return go_on

        return images.stream_image(path, reduce, handed, **kwargs)

    monkeypatch.setattr(image_layer, "stream_image", stream_waiting_for_the_ui)
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(ticked.set)
    timer.start()
    e = open_canvas(qtbot, project, 1)
    try:
        canvas = e.canvas
        at_first: list[tuple[bool, object, int | None]] = []
        canvas.imageShown.connect(
            lambda _i: at_first.append((canvas.image_complete(), canvas.image_pixels(), canvas.image_resolution()))
        )
        with qtbot.waitSignal(canvas.imageComplete, timeout=30_000):
            canvas.show_image(image_id)
        ((complete, pixels, reduce),) = at_first
        assert not complete and pixels is None and reduce == 4  # shown partly; the tools wait
        assert canvas.image_complete() and canvas.image_size() == (4000, 3000)
        pacing.clear()
        timer.stop()
        assert len(waits) >= 5 and all(waits)  # the UI thread turned during every band
        source = canvas.image_pixels()
        assert source is not None
        level = canvas._image_layer.finest_level()
        assert level is not None and level[0] == 4
        expected = images.read_image(big, reduce=4)
        assert np.array_equal(level[1][..., 2::-1], expected)  # Qt's 32-bit pixels: B, G, R, 255
        assert not canvas.view().viewport().grab().isNull()
        # Another image while one streams in: the other shows, nothing stale lands on it.
        canvas.show_image(1)
        with qtbot.waitSignal(canvas.imageShown, timeout=10_000):
            canvas.show_image(image_id)
            canvas.show_image(1)
        assert canvas.wait_for_loads()
        qtbot.wait(50)
        assert canvas.image_size() == (320, 240) and canvas.image_complete()
    finally:
        close_canvas(e)


def test_a_short_wide_png_that_streams_in_one_band_is_whole_at_once(qtbot: QtBot, backend, tmp_path: Path) -> None:
    pytest.importorskip("pyvips", reason="pyvips (the optional 'big' extra) is not installed")
    project = make_project(backend, tmp_path, images=1)
    strip = tmp_path / "strip.png"
    Image.fromarray(np.full((80, 5000, 3), 120, dtype=np.uint8)).save(strip)  # 1/8: 10 rows, one band
    (image_id,) = project.add_images([strip])
    e = open_canvas(qtbot, project, 1)
    try:
        with qtbot.waitSignals([e.canvas.imageShown, e.canvas.imageComplete], timeout=30_000):
            e.canvas.show_image(image_id)
        assert e.canvas.image_complete() and e.canvas.image_pixels() is not None
        assert e.canvas.image_resolution() == 8
    finally:
        close_canvas(e)


def test_layers_and_score_threshold(env: CanvasEnv) -> None:
    canvas = env.canvas
    anns = _add_proposals(env.project)
    canvas.reload_annotations()
    ids = {k: a.id for k, a in anns.items()}
    assert _visible(canvas) == set(ids.values())
    canvas.set_score_threshold(0.5)
    assert _visible(canvas) == set(ids.values()) - {ids["weak_box"]}
    canvas.set_layer_visible("boxes", False)
    assert _visible(canvas) == {ids["mask"], ids["human_polygon"]}
    canvas.set_layer_visible("boxes", True)
    canvas.set_layer_visible("masks", False)
    assert ids["mask"] not in _visible(canvas)
    canvas.set_layer_visible("masks", True)
    canvas.set_layer_visible("polygons", False)
    assert ids["human_polygon"] not in _visible(canvas)
    canvas.set_layer_visible("polygons", True)
    canvas.set_layer_visible("proposals", False)
    assert _visible(canvas) == {ids["human_box"], ids["human_polygon"]}
    canvas.set_layer_visible("proposals", True)
    with pytest.raises(ValueError, match="unknown layer"):
        canvas.set_layer_visible("points", True)
    # "Accept all shown" takes only what passes the threshold.
    canvas.accept_all_visible()
    states = {a.id: a.state for a in env.project.annotations(1)}
    assert states[ids["strong_box"]] is State.ACCEPTED and states[ids["mask"]] is State.ACCEPTED
    assert states[ids["weak_box"]] is State.PROPOSED
    canvas.set_score_threshold(0.0)
    canvas.reject_all_visible()
    assert env.project.annotation(ids["weak_box"]).state is State.REJECTED
    assert ids["weak_box"] not in canvas.annotation_items()  # rejected ones are not drawn
    env.stack.undo()
    env.stack.undo()
    assert all(a.state is State.PROPOSED for a in env.project.annotations(1) if a.model_version is not None)


def test_proposals_look_apart(env: CanvasEnv) -> None:
    canvas = env.canvas
    anns = _add_proposals(env.project)
    canvas.reload_annotations()
    items = canvas.annotation_items()
    proposal = items[anns["strong_box"].id]
    human = items[anns["human_box"].id]
    assert isinstance(proposal, BoxItem)
    assert proposal.tag.text() == "cat 0.90" and human.tag.text() == "bird"
    # a mask's tag hangs below its top-left corner, a box's sits above: they never cover each other
    mask = items[anns["mask"].id]
    assert mask.tag.boundingRect().top() >= 0 and proposal.tag.boundingRect().bottom() <= 0
    assert proposal.pen().style() != Qt.PenStyle.SolidLine and human.pen().style() == Qt.PenStyle.SolidLine
    assert proposal.pen().isCosmetic() and human.pen().isCosmetic()
    assert proposal.zValue() > human.zValue()


def test_thirty_proposals_show_tags_only_where_they_fit(env: CanvasEnv) -> None:
    canvas = env.canvas
    version = env.project.add_model_version(ModelVersion(plugin="det", settings={}, categories=(1,), checkpoint="m"))
    boxes = [(10 + 50 * (n % 6), 10 + 45 * (n // 6), 24, 24) for n in range(30)]
    env.project.add_annotations([proposal(1, 1, version=version.id, score=0.8, box_xywh=b) for b in boxes])
    canvas.reload_annotations()
    tags = [item.tag for item in canvas.annotation_items().values()]
    assert len(tags) == 30
    canvas.view().zoom_by(1.0 / canvas.view().scale_factor())  # 1:1: a 24-pixel box is narrower than its tag
    assert not any(t.isVisible() for t in tags)
    canvas.view().zoom_by(4.0)  # zoomed in, every tag fits over its box
    assert all(t.isVisible() for t in tags)


def test_reload_keeps_unchanged_items_and_selection(env: CanvasEnv) -> None:
    canvas = env.canvas
    anns = _add_proposals(env.project)
    canvas.reload_annotations()
    before = canvas.annotation_items()
    canvas.select([anns["human_box"].id])
    env.project.update_annotation(Annotation(**{**anns["human_polygon"].__dict__, "category_id": 2}))
    canvas.reload_annotations()
    after = canvas.annotation_items()
    assert after[anns["mask"].id] is before[anns["mask"].id]
    assert after[anns["human_polygon"].id] is not before[anns["human_polygon"].id]
    assert after[anns["human_polygon"].id].tag.text() == "dog"
    assert canvas.selected_ids() == [anns["human_box"].id]


def test_no_project_and_unknown_tool(qtbot: QtBot) -> None:
    from PySide6.QtGui import QUndoStack

    canvas = AnnotationCanvas(QUndoStack())
    qtbot.addWidget(canvas)
    canvas.show_image(3)  # no project: nothing happens
    assert canvas.current_image_id() is None
    canvas.delete_selected()
    canvas.accept_all_visible()
    with pytest.raises(ValueError, match="unknown tool"):
        canvas.set_tool("lasso")


def test_showing_the_same_image_again_only_rereads_labels(qtbot: QtBot, env: CanvasEnv) -> None:
    canvas = env.canvas
    levels: list[int] = []
    canvas.resolutionChanged.connect(levels.append)
    env.project.add_annotation(Annotation(image_id=1, category_id=1, kind=Kind.BOX, box_xywh=(5, 5, 20, 20)))
    with qtbot.waitSignal(canvas.imageShown, timeout=1000):
        canvas.show_image(1)
    assert levels == [] and len(canvas.annotation_items()) == 1


def test_mask_outline_follows_pixel_edges(env: CanvasEnv) -> None:
    from labeler.gui.canvas.items import MaskItem

    mask = np.zeros((240, 320), dtype=bool)
    mask[40:60, 100:130] = True
    mask[48:52, 110:115] = False  # a hole
    ann = env.project.add_annotation(Annotation(image_id=1, category_id=2, kind=Kind.MASK, rle=encode_mask(mask)))
    env.canvas.reload_annotations()
    item = env.canvas.annotation_items()[ann.id]
    assert isinstance(item, MaskItem) and item.pixel_count() == 20 * 30 - 4 * 5
    outline = item._outline.boundingRect()
    assert (outline.left(), outline.top()) == pytest.approx((100, 40), abs=0.2)
    assert (outline.right(), outline.bottom()) == pytest.approx((130, 60), abs=0.2)
    assert item._outline.toSubpathPolygons().__len__() == 2  # outer edge and the hole
    assert item.hit(QPointF(101, 41), 0) and not item.hit(QPointF(112, 50), 0)


def test_undo_after_moving_to_another_image(qtbot: QtBot, env: CanvasEnv) -> None:
    canvas = env.canvas
    canvas.set_tool("box")
    drag(canvas, [(10, 10), (60, 60)])
    with qtbot.waitSignal(canvas.imageShown, timeout=10_000):
        canvas.show_image(2)
    with qtbot.waitSignal(canvas.annotationsChanged, timeout=1000) as changed:
        env.stack.undo()
    assert changed.args == [1] and env.project.annotations(1) == []
    assert canvas.current_image_id() == 2


def test_hover_cursor_shows_what_a_drag_will_do(env: CanvasEnv) -> None:
    canvas = env.canvas
    canvas.set_tool("box")
    drag(canvas, [(40, 40), (100, 100)])
    canvas.set_tool("select")
    viewport = canvas.view().viewport()
    hover(canvas, 101, 101)
    assert viewport.cursor().shape() == Qt.CursorShape.SizeFDiagCursor
    hover(canvas, 70, 70)
    assert viewport.cursor().shape() == Qt.CursorShape.SizeAllCursor
    hover(canvas, 200, 200)
    assert viewport.cursor().shape() == Qt.CursorShape.ArrowCursor


def test_setting_the_same_project_again_refreshes_classes(env: CanvasEnv) -> None:
    canvas = env.canvas
    ann = env.project.add_annotation(Annotation(image_id=1, category_id=1, kind=Kind.BOX, box_xywh=(5, 5, 20, 20)))
    canvas.reload_annotations()
    canvas.zoom_actual_size()
    env.project.rename_category(1, "lynx")
    env.project.recolor_category(1, (10, 20, 30))
    canvas.set_project(env.project)
    item = canvas.annotation_items()[ann.id]
    assert item.tag.text() == "lynx" and item.color.getRgb()[:3] == (10, 20, 30)
    assert canvas.current_image_id() == 1 and canvas.view().scale_factor() == pytest.approx(1.0)


@pytest.mark.parametrize("argb_limit", [4_000_000, 100])  # 32-bit overlay, and the 8-bit one of huge masks
def test_masks_are_drawn_in_translucent_class_colour(
    env: CanvasEnv, monkeypatch: pytest.MonkeyPatch, argb_limit: int
) -> None:
    from labeler.gui.canvas import items

    monkeypatch.setattr(items, "ARGB_MAX_PIXELS", argb_limit)
    canvas = env.canvas
    env.project.recolor_category(2, (0, 255, 0))
    mask = np.zeros((240, 320), dtype=bool)
    mask[20:120, 150:300] = True
    env.project.add_annotation(Annotation(image_id=1, category_id=2, kind=Kind.MASK, rle=encode_mask(mask)))
    canvas.set_project(env.project)
    at = vp(canvas, 225, 70)
    canvas.set_layer_visible("masks", False)
    plain = canvas.view().viewport().grab().toImage().pixelColor(at)
    canvas.set_layer_visible("masks", True)
    tinted = canvas.view().viewport().grab().toImage().pixelColor(at)
    assert tinted.green() > plain.green() + 30  # greener ...
    assert tinted.red() < plain.red() and tinted.red() > 0.3 * plain.red()  # ... but the image shows through


def test_flipping_through_images_shows_the_last_one(qtbot: QtBot, env: CanvasEnv) -> None:
    canvas = env.canvas
    shown: list[int] = []
    canvas.imageShown.connect(shown.append)
    env.project.add_annotation(Annotation(image_id=2, category_id=1, kind=Kind.BOX, box_xywh=(5, 5, 20, 20)))
    for image_id in (2, 1, 2, 1, 2):
        canvas.show_image(image_id)
    qtbot.waitUntil(lambda: shown == [2], timeout=10_000)
    assert canvas.wait_for_loads(10_000)
    QApplication.processEvents()
    assert shown == [2] and canvas.current_image_id() == 2
    assert [i.ann.image_id for i in canvas.annotation_items().values()] == [2]


def test_jpeg_decoded_straight_into_one_rgbx_buffer(tmp_path: Path) -> None:
    """decode_jpeg_rgbx gives read_image's pixels in QImage RGB32 order (what to_qt32 makes), and
    declines what it cannot do as read_image would (PNG, rotated by EXIF, truncated): None."""
    from labeler.core.images import read_image
    from labeler.gui.canvas.image_layer import decode_jpeg_rgbx, to_qt32

    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 255, (120, 200, 3), dtype=np.uint8)
    jpeg = tmp_path / "a.jpg"
    Image.fromarray(pixels).save(jpeg, quality=85)
    rgbx = decode_jpeg_rgbx(jpeg)
    assert rgbx is not None and rgbx.shape == (120, 200, 4)
    assert np.array_equal(rgbx, to_qt32(read_image(jpeg)))
    png = tmp_path / "a.png"
    Image.fromarray(pixels).save(png)
    assert decode_jpeg_rgbx(png) is None
    rotated = tmp_path / "r.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(rotated, exif=exif)
    assert decode_jpeg_rgbx(rotated) is None
    truncated = tmp_path / "t.jpg"
    truncated.write_bytes(jpeg.read_bytes()[:400])
    assert decode_jpeg_rgbx(truncated) is None


def test_a_mask_proposal_is_hatched_all_over_and_an_accepted_mask_is_not(qtbot: QtBot) -> None:
    import numpy as np
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtWidgets import QStyleOptionGraphicsItem

    from labeler.core.annotation import Category, Kind, State
    from labeler.core.geometry import encode_mask
    from labeler.gui.canvas.items import MaskItem

    mask = np.ones((40, 40), bool)
    category = Category(1, "cell", (200, 30, 30))

    def render(state: State) -> np.ndarray:
        ann = Annotation(
            image_id=1,
            category_id=1,
            kind=Kind.MASK,
            rle=encode_mask(mask),
            state=state,
            model_version=1 if state is State.PROPOSED else None,
            score=0.8 if state is State.PROPOSED else None,
        )
        item = MaskItem(ann, category)
        image = QImage(40, 40, QImage.Format.Format_ARGB32)
        image.fill(0xFFFFFFFF)
        painter = QPainter(image)
        option = QStyleOptionGraphicsItem()
        option.exposedRect = item.boundingRect()
        item.paint(painter, option)
        painter.end()
        pixels = np.frombuffer(image.constBits(), np.uint8).reshape(40, 40, 4)
        return pixels[5:35, 5:35, :3].reshape(-1, 3).astype(float)  # the inside, away from the outline

    accepted, proposed = render(State.ACCEPTED), render(State.PROPOSED)
    assert accepted.std(axis=0).max() < 1.0  # an even tint
    assert proposed.std(axis=0).max() > 10.0  # hatch lines across the whole region

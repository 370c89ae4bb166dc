"""The window at small sizes (issue #10 item 13): panels give way before the canvas, the image is
refitted, panels never overlap, a restored image list too narrow to read is widened."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QRect, Qt
from PySide6.QtWidgets import QApplication, QDockWidget
from pytestqt.qtbot import QtBot

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")  # offscreen platform

from backends import Backend  # noqa: E402
from gui_helpers import close_window, show_window  # noqa: E402
from gui_support import make_project  # noqa: E402

from labeler.gui.layout import (  # noqa: E402
    CANVAS_SHARE,
    READABLE_LIST_WIDTH,
    READABLE_PANEL_WIDTH,
    squeezed_widths,
)
from labeler.gui.main_window import MainWindow  # noqa: E402


@pytest.fixture
def window(qtbot: QtBot) -> Iterator[MainWindow]:
    win = show_window(qtbot)
    yield win
    close_window(win)


def _settle() -> None:
    for _ in range(4):
        QApplication.processEvents()


def _docks(win: MainWindow) -> dict[str, QDockWidget]:
    return {d.objectName(): d for d in win.findChildren(QDockWidget)}


def _resize(win: MainWindow, width: int, height: int) -> None:
    win.resize(width, height)
    _settle()


def test_squeeze_gives_the_canvas_its_share_from_the_columns_slack() -> None:
    assert squeezed_widths(total=1400, wanted=(260, 330), minimum=(160, 140), canvas_min=280) == (260, 330)
    left, right = squeezed_widths(total=800, wanted=(260, 330), minimum=(160, 140), canvas_min=280)
    assert 800 - left - right == pytest.approx(CANVAS_SHARE * 800, abs=1)
    assert 260 - left == pytest.approx((100 / 290) * 190, abs=1)  # in proportion to what each can spare
    assert squeezed_widths(total=500, wanted=(260, 330), minimum=(160, 140), canvas_min=280) == (160, 140)


def test_at_800_by_500_the_panels_give_way_and_grow_back(window: MainWindow) -> None:
    _resize(window, 1400, 900)
    docks = _docks(window)
    wide = {name: docks[name].width() for name in ("images_dock", "model_dock")}
    _resize(window, 800, 500)
    shared = window.canvas.width() + docks["images_dock"].width() + docks["model_dock"].width()
    # before: the docks kept 260 + 330 px and the canvas was left 280 (its floor)
    assert window.canvas.width() >= CANVAS_SHARE * shared - 2
    assert docks["images_dock"].width() < wide["images_dock"] and docks["model_dock"].width() < wide["model_dock"]
    _resize(window, 1400, 900)
    assert {name: docks[name].width() for name in wide} == wide  # the user's widths come back


def test_at_500_by_350_nothing_overlaps(window: MainWindow) -> None:
    _resize(window, 500, 350)
    assert window.size().toTuple() == (500, 350)  # before, its minimum was 592 x 434: forced smaller, panels overlapped
    canvas = QRect(window.canvas.mapTo(window, window.canvas.rect().topLeft()), window.canvas.size())
    # a dock behind another's tab (the objects, behind the proposals) shares its place: not an overlap
    shown = [d for d in _docks(window).values() if d.isVisible() and not d.visibleRegion().isEmpty()]
    assert {"images_dock", "classes_dock", "proposals_dock", "model_dock"} <= {d.objectName() for d in shown}
    rects = [d.geometry() for d in shown]
    assert window.canvas.width() >= MainWindow.MIN_CANVAS[0] and window.canvas.height() >= MainWindow.MIN_CANVAS[1]
    for i, rect in enumerate(rects):
        assert not rect.intersects(canvas), shown[i].objectName()
        for other in rects[i + 1 :]:
            assert not rect.intersects(other)
        assert window.rect().contains(rect)  # the window is never smaller than what it holds


def test_the_image_is_refitted_on_resize_in_fit_mode_only(
    qtbot: QtBot, backend: Backend, window: MainWindow, tmp_path: Path
) -> None:
    root = make_project(backend, tmp_path / "proj", 1)
    with qtbot.waitSignal(window.canvas.imageShown, timeout=10_000):
        assert backend.open_in(window, root)
    view = window.canvas.view()
    _resize(window, 1200, 800)
    assert view.scale_factor() == pytest.approx(view.fit_scale(), rel=0.03)  # fitInView keeps a 2 px margin
    before = view.scale_factor()
    _resize(window, 800, 500)
    assert view.scale_factor() == pytest.approx(view.fit_scale(), rel=0.03) and view.scale_factor() < before
    window.canvas.zoom_actual_size()
    _resize(window, 1000, 700)
    assert view.scale_factor() == pytest.approx(1.0)  # zoomed by the user: kept


def test_a_restored_image_list_too_narrow_to_read_is_widened(qtbot: QtBot) -> None:
    first = show_window(qtbot)
    _resize(first, 1200, 800)
    images = _docks(first)["images_dock"]
    first.resizeDocks([images], [150], Qt.Orientation.Horizontal)  # as narrow as it goes
    _settle()
    narrowed = images.width()
    assert narrowed < READABLE_LIST_WIDTH
    first.close()
    second = show_window(qtbot)
    _settle()
    _resize(second, 1200, 800)  # the restored geometry is clamped to the 800 x 600 offscreen screen
    assert _docks(second)["images_dock"].width() >= READABLE_LIST_WIDTH
    second.shutdown()


def test_a_restored_right_hand_column_too_narrow_to_read_is_widened(qtbot: QtBot) -> None:
    """A layout saved in a small window left the classes, proposals and model panels at 160 px,
    each with a sideways scroll bar; the next start gives the column back a readable width."""
    first = show_window(qtbot)
    _resize(first, 1200, 800)
    model = _docks(first)["model_dock"]
    first.resizeDocks([model], [150], Qt.Orientation.Horizontal)
    _settle()
    assert model.width() < READABLE_PANEL_WIDTH
    first.close()
    second = show_window(qtbot)
    _settle()
    _resize(second, 1200, 800)
    docks = _docks(second)
    assert all(docks[n].width() >= READABLE_PANEL_WIDTH for n in ("classes_dock", "proposals_dock", "model_dock"))
    second.shutdown()


def test_the_right_hand_panels_fit_a_readable_column_without_scrolling_sideways(window: MainWindow) -> None:
    """At 322 px the Train tab scrolled sideways (its budget, Train and Cancel shared one row)."""
    from PySide6.QtWidgets import QScrollArea, QStyle

    scroll_bar = window.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent)
    docks = _docks(window)
    for name in ("classes_dock", "proposals_dock", "objects_dock", "model_dock"):
        content = docks[name].widget()
        panel = content.widget() if isinstance(content, QScrollArea) else content
        assert panel is not None
        assert panel.minimumSizeHint().width() + scroll_bar <= READABLE_PANEL_WIDTH, name


def test_long_names_elide_in_a_narrow_list_instead_of_scrolling(
    qtbot: QtBot, backend: Backend, window: MainWindow, tmp_path: Path
) -> None:
    from gui_support import write_images

    root = tmp_path / "proj"
    for path in write_images(root / "raw", 2):
        path.rename(root / f"BloodImage_000{path.stem[-1]}_with_a_long_name_that_does_not_fit.png")
    with backend.create(root) as project:
        project.add_folder(root)
    with qtbot.waitSignal(window.canvas.imageShown, timeout=10_000):
        assert backend.open_in(window, root)
    _resize(window, 800, 500)
    view = window.images.view
    index = view.model().index(0, 0)
    assert view.fontMetrics().horizontalAdvance(index.data()) > view.viewport().width()  # it cannot fit
    # before: each row was as wide as its name, so the list scrolled sideways and cut every name at
    # the same "BloodImage_00…"; now a row is the list's width and the delegate elides the name's middle
    assert view.visualRect(index).width() <= view.viewport().width()
    assert view.horizontalScrollBar().maximum() == 0
    assert view.textElideMode() is Qt.TextElideMode.ElideMiddle

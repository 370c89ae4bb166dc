"""Helpers for the canvas tests: a tiny generated project and real mouse input on the canvas."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
from PIL import Image
from PySide6.QtCore import QPoint, QPointF, Qt, QTimer
from PySide6.QtGui import QUndoStack
from PySide6.QtTest import QTest
from pytestqt.qtbot import QtBot

from labeler.core.store import Project
from labeler.gui.canvas import AnnotationCanvas
from labeler.gui.main_window import MainWindow

if TYPE_CHECKING:
    from backends import Backend

NO_MOD = Qt.KeyboardModifier.NoModifier
LEFT = Qt.MouseButton.LeftButton


def make_project(backend: Backend, root: Path, *, images: int = 2, width: int = 320, height: int = 240) -> Project:
    """A project on ``backend`` with ``images`` generated PNGs (a gradient with a dark square) in
    ``root/images`` and 3 classes; its folder (SQLite) or image root (PostgreSQL) is ``root/project``."""
    folder = root / "images"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(images):
        x = np.linspace(0, 255, width, dtype=np.float64)
        y = np.linspace(0, 255, height, dtype=np.float64)
        pixels = np.zeros((height, width, 3), dtype=np.uint8)
        pixels[..., 0] = x[None, :]
        pixels[..., 1] = y[:, None]
        pixels[..., 2] = rng.integers(0, 255)
        pixels[height // 4 : height // 2, width // 4 : width // 2] = 30
        path = folder / f"img{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    project = backend.create(root / "project")
    project.add_images(paths)
    for name in ("cat", "dog", "bird"):
        project.add_category(name)
    return project


def vp(canvas: AnnotationCanvas, x: float, y: float) -> QPoint:
    """Viewport position of image pixel coordinate ``(x, y)``."""
    return canvas.view().mapFromScene(QPointF(x, y))


def press(
    canvas: AnnotationCanvas, x: float, y: float, button: Qt.MouseButton = LEFT, mod: Qt.KeyboardModifier = NO_MOD
) -> None:
    QTest.mousePress(canvas.view().viewport(), button, mod, vp(canvas, x, y))


def move(canvas: AnnotationCanvas, x: float, y: float) -> None:
    QTest.mouseMove(canvas.view().viewport(), vp(canvas, x, y))


def release(
    canvas: AnnotationCanvas, x: float, y: float, button: Qt.MouseButton = LEFT, mod: Qt.KeyboardModifier = NO_MOD
) -> None:
    QTest.mouseRelease(canvas.view().viewport(), button, mod, vp(canvas, x, y))


def click(canvas: AnnotationCanvas, x: float, y: float, mod: Qt.KeyboardModifier = NO_MOD) -> None:
    QTest.mouseClick(canvas.view().viewport(), LEFT, mod, vp(canvas, x, y))


def double_click(canvas: AnnotationCanvas, x: float, y: float) -> None:
    QTest.mouseDClick(canvas.view().viewport(), LEFT, NO_MOD, vp(canvas, x, y))


def drag(
    canvas: AnnotationCanvas,
    points: Sequence[tuple[float, float]],
    button: Qt.MouseButton = LEFT,
    mod: Qt.KeyboardModifier = NO_MOD,
) -> None:
    """Press at the first point, move through the others, release at the last (image pixels)."""
    press(canvas, *points[0], button=button, mod=mod)
    for p in points[1:]:
        move(canvas, *p)
    release(canvas, *points[-1], button=button, mod=mod)


def key(canvas: AnnotationCanvas, k: Qt.Key, mod: Qt.KeyboardModifier = NO_MOD) -> None:
    QTest.keyClick(canvas.view(), k, mod)


class CanvasEnv:
    """A shown canvas on a generated project, image 1 on screen, class 1 picked."""

    def __init__(self, project: Project, stack: QUndoStack, canvas: AnnotationCanvas) -> None:
        self.project = project
        self.stack = stack
        self.canvas = canvas


def open_canvas(qtbot: QtBot, project: Project, image_id: int = 1, *, size: tuple[int, int] = (640, 480)) -> CanvasEnv:
    stack = QUndoStack()
    canvas = AnnotationCanvas(stack)
    qtbot.addWidget(canvas)
    canvas.resize(*size)
    canvas.show()
    qtbot.waitExposed(canvas)
    canvas.set_project(project)
    with qtbot.waitSignal(canvas.imageShown, timeout=10_000):
        canvas.show_image(image_id)
    canvas.set_category(1)
    canvas.view().setFocus()
    return CanvasEnv(project, stack, canvas)


def close_canvas(env: CanvasEnv) -> None:
    env.canvas.set_project(None)
    assert env.canvas.wait_for_loads(30_000)
    env.project.close()


def hover(canvas: AnnotationCanvas, x: float, y: float) -> None:
    """A mouse move with no button held, sent to the canvas's viewport itself.

    (QTest.mouseMove moves the system cursor, so the event goes to whatever window is on top there.)
    """
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    viewport = canvas.view().viewport()
    local = QPointF(vp(canvas, x, y))
    event = QMouseEvent(
        QMouseEvent.Type.MouseMove,
        local,
        QPointF(viewport.mapToGlobal(local)),
        Qt.MouseButton.NoButton,
        Qt.MouseButton.NoButton,
        NO_MOD,
    )
    QApplication.sendEvent(viewport, event)


def show_window(qtbot: QtBot) -> MainWindow:
    """A main window (no dialogs), shown, exposed and active."""
    win = MainWindow(interactive=False)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    win.activateWindow()
    return win


def close_window(win: MainWindow) -> None:
    """Stop the window's work and let go of its project."""
    win.shutdown()
    if win.project is not None:
        win.set_project(None)


class Ticker:
    """Counts the ticks of a 20 ms timer: proof that the UI thread keeps turning."""

    def __init__(self) -> None:
        self.ticks = 0
        self.start = time.monotonic()
        self.longest_gap = 0.0
        self._last = self.start
        self.timer = QTimer()
        self.timer.setInterval(20)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def _tick(self) -> None:
        now = time.monotonic()
        self.longest_gap = max(self.longest_gap, now - self._last)
        self._last = now
        self.ticks += 1

    def stop(self) -> float:
        self.timer.stop()
        return time.monotonic() - self.start

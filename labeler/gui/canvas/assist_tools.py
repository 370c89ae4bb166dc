"""The assisted mask tool: box to mask, click refinement, and taking one region of a proposal.

- drag a box: its mask in the current class appears as a preview (GrabCut, seeded by the active
  segmentation model's probabilities when there is one; see :mod:`labeler.assist`);
- then left click = on the object, right click = not on it: the preview is recomputed;
- Enter keeps it as a human mask label (one undo step), Escape drops it;
- a click (no drag) inside a mask proposal, with no mask being made, accepts the region of the
  proposal under the click alone (the proposal's other regions stay proposed);
- :class:`OutlineTool`: a polygon whose sides snap to image edges between the clicked points.

The algorithms run in a worker thread; every request carries a generation number and results of
older requests are dropped, so painting never waits and a newer click always wins.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, QThreadPool
from PySide6.QtGui import QColor, QImage, QKeyEvent, QMouseEvent
from PySide6.QtWidgets import QGraphicsEllipseItem, QGraphicsPixmapItem, QGraphicsRectItem

from labeler.assist import Click, MaskResult, PixelSource, prepare, region_at, segment
from labeler.core.annotation import Annotation, Kind, State
from labeler.core.geometry import encode_mask
from labeler.gui.canvas.edits import clamp_box
from labeler.gui.canvas.items import MaskItem
from labeler.gui.canvas.tools import (
    CLICK_SLOP_PX,
    MIN_BOX_SIDE,
    BoxDragTool,
    PolygonTool,
    _clamp,
    _cosmetic,
)
from labeler.gui.controllers.workers import FunctionWorker

if TYPE_CHECKING:
    from labeler.gui.canvas.host import ToolHost


def _probability(project: Any, category_id: int, cache: dict[str, Any]) -> Any:
    """The active segmentation version's probability of ``category_id`` on a crop, or ``None``."""
    from labeler.learning.probabilities import active_segmentation_model, class_channel, class_probabilities

    if "model" not in cache:
        try:
            cache["model"] = active_segmentation_model(project)
        except Exception:  # noqa: BLE001 - a model that cannot load leaves plain GrabCut
            cache["model"] = None
    loaded = cache["model"]
    channel = class_channel(loaded, category_id) if loaded is not None else None
    if channel is None:
        return None
    return lambda crop: class_probabilities(loaded, crop)[channel]


def _compute(
    source: PixelSource,
    box: tuple[float, float, float, float],
    clicks: list[Click],
    prepared: Any,
    previous: MaskResult | None,
    project: Any,
    category_id: int,
    cache: dict[str, Any],
) -> tuple[Any, MaskResult]:
    if prepared is None:
        prepared = prepare(source, box, probability=_probability(project, category_id, cache))
    return prepared, segment(prepared, clicks, previous=previous)


class AssistTool(BoxDragTool):
    name = "assist"
    cursor = Qt.CursorShape.CrossCursor
    hint = (
        "Drag a box around the object; then left click adds, right click removes, "
        "Backspace takes a click back, Enter keeps the mask, Escape drops it"
    )

    def __init__(self, canvas: ToolHost) -> None:
        super().__init__(canvas)
        self._box: tuple[float, float, float, float] | None = None
        self._clicks: list[Click] = []
        self._prepared: Any = None
        self._result: MaskResult | None = None
        self._generation = 0
        self._preview: QGraphicsPixmapItem | None = None
        self._marks: list[QGraphicsEllipseItem] = []
        self._frame: QGraphicsRectItem | None = None
        self._models: dict[str, Any] = {}
        self._pool = QThreadPool()  # the tool's own: one computation at a time
        self._pool.setMaxThreadCount(1)

    # ---- state -------------------------------------------------------------------------

    def making(self) -> bool:
        """Whether a mask is being made (box drawn, not yet kept or dropped)."""
        return self._box is not None

    def result(self) -> MaskResult | None:
        """The mask shown now (for tests)."""
        return self._result

    def busy(self) -> bool:
        return self._pool.activeThreadCount() > 0

    def wait(self, timeout_ms: int = 30_000) -> bool:
        return self._pool.waitForDone(timeout_ms)

    def cancel(self) -> None:
        self._generation += 1
        self._box, self._clicks, self._prepared, self._result = None, [], None, None
        self._drag.cancel()
        for item in [self._preview, self._frame, *self._marks]:
            if item is not None and item.scene() is not None:
                item.scene().removeItem(item)
        self._preview = self._frame = None
        self._marks = []
        self._models.clear()  # a newly trained version is used for the next box

    # ---- mouse -------------------------------------------------------------------------

    def press(self, pos: QPointF, event: QMouseEvent) -> None:
        w, h = self.canvas.image_size()
        p = _clamp(pos, w, h)
        if self.making():
            if event.button() in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
                positive = event.button() == Qt.MouseButton.LeftButton
                self._clicks.append(Click(p.x(), p.y(), positive))
                self._mark(p, positive)
                self._request()
            return
        if self._masks_refused():
            return
        super().press(p, event)

    def dragged(self, start: QPointF, end: QPointF) -> None:
        w, h = self.canvas.image_size()
        if self._screen_distance(start, end) < CLICK_SLOP_PX:
            self._take_region(end)
            return
        box = clamp_box(start.x(), start.y(), end.x(), end.y(), w, h)
        if box[2] < max(MIN_BOX_SIDE, 3) or box[3] < max(MIN_BOX_SIDE, 3):
            return
        self._box = box
        self._frame = QGraphicsRectItem(QRectF(*box))
        self._frame.setPen(_cosmetic(self._class_color(), 1.0, dashed=True))
        self._frame.setZValue(1000)
        self.canvas.scene().addItem(self._frame)
        self._request()

    # ---- keys --------------------------------------------------------------------------

    def wants_key(self, event: QKeyEvent) -> bool:
        keys = (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Escape, Qt.Key.Key_Backspace)
        return self.making() and event.key() in keys

    def key(self, event: QKeyEvent) -> bool:
        if not self.making():
            return False
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.finish()
            return True
        if event.key() == Qt.Key.Key_Escape:
            self.cancel()
            return True
        if event.key() == Qt.Key.Key_Backspace and self._clicks:  # take back the last click
            self._clicks.pop()
            mark = self._marks.pop()
            if mark.scene() is not None:
                mark.scene().removeItem(mark)
            self._request()
            return True
        return False

    def finish(self) -> None:
        """Keep the mask shown as a human mask label (waits for a computation in flight)."""
        self.wait()
        from PySide6.QtCore import QCoreApplication

        QCoreApplication.processEvents()  # deliver the last result
        result, seconds = self._result, time.monotonic() - self._drag.started
        cid, image_id = self.canvas.category_id(), self.canvas.current_image_id()
        self.cancel()
        if result is None or result.empty or cid is None or image_id is None:
            return
        w, h = self.canvas.image_size()
        full = result.full(w, h)
        rle = encode_mask(full)
        self.canvas.remember_mask(rle, full)
        ann = Annotation(image_id=image_id, category_id=cid, kind=Kind.MASK, rle=rle)
        self.canvas.select(self.canvas.add([ann], text="Box to mask", seconds=seconds))

    # ---- work --------------------------------------------------------------------------

    def _mark(self, p: QPointF, positive: bool) -> None:
        r = 4.0 / max(self.canvas.view().scale_factor(), 1e-6)
        mark = QGraphicsEllipseItem(QRectF(p.x() - r, p.y() - r, 2 * r, 2 * r))
        mark.setBrush(QColor(40, 200, 60) if positive else QColor(220, 40, 40))
        mark.setPen(_cosmetic(QColor(255, 255, 255), 1.0))
        mark.setZValue(1002)
        self.canvas.scene().addItem(mark)
        self._marks.append(mark)

    def _request(self) -> None:
        source = self.canvas.image_pixels()
        if source is None or self._box is None:
            return
        self._generation += 1
        generation = self._generation
        worker = FunctionWorker(
            _compute,
            source,
            self._box,
            list(self._clicks),
            self._prepared,
            self._result,
            self.canvas.project(),
            self.canvas.category_id(),
            self._models,
        )
        worker.signals.finished.connect(lambda out, g=generation: self._on_result(g, out))
        worker.signals.failed.connect(lambda message, g=generation: self._on_failed(g, message))
        worker.start(self._pool)

    def _on_failed(self, generation: int, message: str) -> None:
        if generation == self._generation:
            self.canvas.report(f"Box to mask: {message}")

    def _on_result(self, generation: int, out: tuple[Any, MaskResult]) -> None:
        if generation != self._generation or self._box is None:
            return  # a newer click or a cancel came meanwhile
        self._prepared, self._result = out
        self._clicks = list(self._result.clicks)  # the same clicks, measured against the mask they corrected
        self._show(self._result)

    def _show(self, result: MaskResult) -> None:
        color = QColor(self._class_color())
        rgba = np.zeros((*result.mask.shape, 4), np.uint8)
        rgba[result.mask] = (color.red(), color.green(), color.blue(), 140)
        image = QImage(rgba.data, rgba.shape[1], rgba.shape[0], rgba.shape[1] * 4, QImage.Format.Format_RGBA8888).copy()
        from PySide6.QtGui import QPixmap

        if self._preview is None:
            self._preview = QGraphicsPixmapItem()
            self._preview.setZValue(999)
            self.canvas.scene().addItem(self._preview)
        self._preview.setPixmap(QPixmap.fromImage(image))
        self._preview.setPos(result.window.x0, result.window.y0)

    def _take_region(self, p: QPointF) -> None:
        """A click inside a mask proposal: accept the region of it under the click alone."""
        proposals = [i for i in self.canvas.visible_items() if isinstance(i, MaskItem) and i.proposal and i.hit(p, 0.0)]
        if not proposals:
            return
        item = min(proposals, key=lambda i: i.area())
        w, h = self.canvas.image_size()
        mask = item.full_mask(w, h)
        region = region_at(mask, p.x(), p.y())
        if region is None:
            return
        rest = mask & ~region
        taken = replace(item.ann, rle=encode_mask(region), state=State.ACCEPTED, model_version=None, score=None)
        pairs: list[Any] = [(item.ann, taken)]
        if rest.any():
            pairs.append((None, replace(item.ann, id=None, created=None, updated=None, rle=encode_mask(rest))))
        self.canvas.change(pairs, "Accept region")


def _snap(source: PixelSource, a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    from labeler.assist import simplify, snap_path

    return simplify(snap_path(source, a, b), 0.7)


class OutlineTool(PolygonTool):
    """Edge-snapping outline: a polygon whose sides follow image edges between the clicked points
    (intelligent scissors on a window around each side, in a worker thread). Enter, a
    double-click or a click on the first point closes it; Backspace takes back a point."""

    name = "outline"
    hint = "Click around the object: the sides follow its edges; Enter or the first point closes it"

    def __init__(self, canvas: ToolHost) -> None:
        super().__init__(canvas)
        self._paths: dict[int, np.ndarray] = {}  # side i: from vertex i to vertex i + 1 (or back to 0)
        self._pending = 0
        self._pool = QThreadPool()  # the tool's own: one computation at a time
        self._pool.setMaxThreadCount(1)
        self._epoch = 0

    def wait(self, timeout_ms: int = 30_000) -> bool:
        return self._pool.waitForDone(timeout_ms)

    def cancel(self) -> None:
        self._epoch += 1
        self._paths = {}
        super().cancel()

    def press(self, pos: QPointF, event: QMouseEvent) -> None:
        before = len(self._vertices)
        super().press(pos, event)
        if len(self._vertices) == before + 1 and before >= 1:
            self._request(before - 1)

    def _request(self, side: int) -> None:
        source = self.canvas.image_pixels()
        if source is None:
            return
        a = self._vertices[side]
        b = self._vertices[(side + 1) % len(self._vertices)]
        epoch = self._epoch
        worker = FunctionWorker(_snap, source, (a.x(), a.y()), (b.x(), b.y()))
        count = len(self._vertices)
        worker.signals.finished.connect(lambda path, s=side, e=epoch, n=count: self._on_path(e, s, n, path))
        worker.start(self._pool)

    def _on_path(self, epoch: int, side: int, count: int, path: np.ndarray) -> None:
        if epoch != self._epoch or side + 1 > len(self._vertices):
            return
        self._paths[side] = path
        self._refresh()

    def _refresh(self) -> None:
        super()._refresh()
        if self._preview is None:
            return
        from PySide6.QtGui import QPainterPath

        path = QPainterPath(self._vertices[0])
        for i in range(1, len(self._vertices)):
            snapped = self._paths.get(i - 1)
            if snapped is not None:
                for x, y in snapped[1:]:
                    path.lineTo(float(x), float(y))
            else:
                path.lineTo(self._vertices[i])
        path.lineTo(self._cursor)
        self._preview.setPath(path)

    def finish(self) -> None:
        if len(self._vertices) < 3:
            return
        n = len(self._vertices)
        source = self.canvas.image_pixels()
        self.wait()
        from PySide6.QtCore import QCoreApplication

        QCoreApplication.processEvents()
        points: list[tuple[float, float]] = []
        for i in range(n):
            a, b = self._vertices[i], self._vertices[(i + 1) % n]
            snapped = self._paths.get(i) if i < n - 1 else None
            if snapped is None and source is not None:  # the closing side (or one not back yet)
                snapped = _snap(source, (a.x(), a.y()), (b.x(), b.y()))
            seg = snapped if snapped is not None else np.array([(a.x(), a.y()), (b.x(), b.y())])
            points.extend((float(x), float(y)) for x, y in seg[:-1])
        self._vertices = [QPointF(x, y) for x, y in points]
        self._paths = {}
        super().finish()

"""The canvas tools: select / move / resize, box, polygon, brush and eraser.

A tool gets mouse events in scene coordinates (image pixels) from the canvas, shows live feedback
with temporary items, and on release hands the finished edit to the canvas, which turns it into one
undo command (so a whole drag or brush stroke is one undo step). Tools never write to the store.

- **select**: click picks the smallest label under the cursor (Ctrl/Shift-click adds or removes),
  drag moves the selection, a selected box's handles resize it, a selected polygon's vertices drag;
  double-click on a polygon's edge inserts a vertex there, on a vertex deletes it.
- **box**: drag from corner to corner.
- **polygon**: click the vertices; close with a click on the first vertex, a double-click or Enter;
  Backspace takes back the last vertex, Escape cancels.
- **brush**: paints into the mask of the current class (the selected one if it is of that class,
  else the first human mask of that class, else a new mask).
- **eraser**: clears pixels of the selected mask, or of the mask under the cursor.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QKeyEvent, QMouseEvent, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsEllipseItem, QGraphicsItem, QGraphicsPathItem, QGraphicsRectItem

from labeler.core.annotation import Annotation, Kind
from labeler.core.geometry import encode_mask
from labeler.gui.canvas import style
from labeler.gui.canvas.edits import clamp_box, paint_into, stroke_bounds, stroke_mask
from labeler.gui.canvas.items import AnnotationItem, BoxItem, Handle, MaskItem, PolygonItem

if TYPE_CHECKING:
    from labeler.gui.canvas.host import ToolHost

#: A drag shorter than this many screen pixels is a click, not a move.
CLICK_SLOP_PX = 2.0
#: Boxes smaller than this (image pixels per side) are discarded as slips.
MIN_BOX_SIDE = 1.0
#: Boxes drawn smaller than this on screen (pixels per side, at the zoom they are drawn at) are
#: discarded too, with a word: an almost invisible box is a slip, and a small object is drawn zoomed in.
MIN_BOX_SCREEN_PX = 6.0


def _clamp(pos: QPointF, width: int, height: int) -> QPointF:
    return QPointF(min(max(pos.x(), 0.0), float(width)), min(max(pos.y(), 0.0), float(height)))


def _cosmetic(color: QColor, width: float = 1.5, *, dashed: bool = False) -> QPen:
    pen = QPen(color, width)
    pen.setCosmetic(True)
    if dashed:
        pen.setStyle(Qt.PenStyle.DashLine)
    return pen


class Tool:
    """Base tool: does nothing. ``name`` is what :meth:`~labeler.gui.canvas.canvas.AnnotationCanvas.set_tool` takes."""

    name = ""
    cursor = Qt.CursorShape.ArrowCursor
    hint = ""
    """What the tool does with the mouse and keys, in one line (the status bar shows it)."""

    def __init__(self, canvas: ToolHost) -> None:
        self.canvas = canvas

    def activate(self) -> None:
        """The tool became the active one."""

    def deactivate(self) -> None:
        """Another tool takes over: drop any half-done drawing."""
        self.cancel()

    def cancel(self) -> None:
        """Drop any half-done drawing (the image changes, Escape, a reload)."""

    def settings_changed(self) -> None:
        """Brush size or class changed."""

    def items_reloaded(self) -> None:
        """The canvas re-read the annotations (some items may have been replaced or removed)."""

    def press(self, pos: QPointF, event: QMouseEvent) -> None: ...

    def move(self, pos: QPointF, event: QMouseEvent) -> None: ...

    def release(self, pos: QPointF, event: QMouseEvent) -> None: ...

    def double_click(self, pos: QPointF, event: QMouseEvent) -> None: ...

    def key(self, event: QKeyEvent) -> bool:
        """Handle a key; ``True`` if used."""
        return False

    def wants_key(self, event: QKeyEvent) -> bool:
        """Whether :meth:`key` would use this key now (drawing in progress)."""
        return False

    # ---- helpers -----------------------------------------------------------------------------

    def _screen_distance(self, a: QPointF, b: QPointF) -> float:
        d = (a - b) * self.canvas.view().scale_factor()
        return float(np.hypot(d.x(), d.y()))

    def _class_color(self) -> QColor:
        cid = self.canvas.category_id()
        return style.category_color(self.canvas.category(cid) if cid is not None else None)

    def _masks_refused(self) -> bool:
        """Say so and return ``True`` where the image is too big for a mask (a gigapixel image)."""
        from labeler.core.images import mask_refusal

        refusal = mask_refusal(*self.canvas.image_size())
        if refusal is not None:
            self.canvas.report(refusal)
        return refusal is not None

    def _need_category(self) -> int | None:
        cid = self.canvas.category_id()
        if cid is None or self.canvas.category(cid) is None:
            self.canvas.report("Add a class first: new labels need one.")
            self.canvas.ask_for_class()  # the window asks for a name, as labelme does
            return None
        return cid


class SelectTool(Tool):
    name = "select"
    hint = "Click a label to select it, drag to move it or its handles; Y / X accept or reject a proposal"

    def __init__(self, canvas: ToolHost) -> None:
        super().__init__(canvas)
        self._mode: str | None = None
        self._start = QPointF()
        self._item: AnnotationItem | None = None
        self._moving: list[AnnotationItem] = []
        self._handle = -1
        self._vertex = (-1, -1)
        self._orig_rect = QRectF()
        self._orig_parts: list[np.ndarray] = []
        self._moved = False

    def cancel(self) -> None:
        if self._mode == "move":
            for item in self._moving:
                if item.scene() is not None:
                    item.setPos(0, 0)
        elif self._mode == "resize" and isinstance(self._item, BoxItem):
            self._item.set_rect(self._orig_rect)
        elif self._mode == "vertex" and isinstance(self._item, PolygonItem):
            self._item.set_parts(self._orig_parts)
        self._mode = None
        self._item = None
        self._moving = []

    def items_reloaded(self) -> None:
        # A drag on an item that was replaced (changed elsewhere, e.g. new proposals) stops.
        involved = [*self._moving, *([self._item] if self._item is not None else [])]
        if self._mode is not None and any(i.scene() is None for i in involved):
            for item in self._moving:
                if item.scene() is not None:
                    item.setPos(0, 0)
            self._mode = None
            self._item = None
            self._moving = []

    def _handle_tolerance(self) -> float:
        return (style.HANDLE_SIZE / 2 + 3) / max(self.canvas.view().scale_factor(), 1e-6)

    def _handle_at(self, pos: QPointF) -> tuple[AnnotationItem, int] | None:
        """The one selected item and the index of its handle under ``pos``, if any."""
        selected = [i for i in self.canvas.visible_items() if i.isSelected()]
        if len(selected) != 1:
            return None
        item = selected[0]
        points = item.handle_points()
        if not points:
            return None
        local = item.mapFromScene(pos)
        dists = [np.hypot(p.x() - local.x(), p.y() - local.y()) for p in points]
        best = int(np.argmin(dists))
        return (item, best) if dists[best] <= self._handle_tolerance() else None

    def _grab_handle(self, pos: QPointF) -> bool:
        """Start a resize or vertex drag if ``pos`` is on a handle of the one selected item."""
        found = self._handle_at(pos)
        if found is None:
            return False
        item, best = found
        self._item = item
        if isinstance(item, BoxItem):
            self._mode, self._handle, self._orig_rect = "resize", best, item.rect()
            return True
        if isinstance(item, PolygonItem):
            parts = item.parts()
            offset = 0
            for pi, part in enumerate(parts):
                if best < offset + len(part):
                    self._vertex = (pi, best - offset)
                    break
                offset += len(part)
            self._mode, self._orig_parts = "vertex", parts
            return True
        return False

    def press(self, pos: QPointF, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        self._start = QPointF(pos)
        self._moved = False
        if self._grab_handle(pos):
            return
        item = self.canvas.item_at(pos)
        additive = bool(event.modifiers() & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier))
        if item is None:
            if not additive:
                self.canvas.select([])
            return
        assert item.ann.id is not None
        if additive:
            ids = set(self.canvas.selected_ids()) ^ {item.ann.id}
            self.canvas.select(sorted(ids))
            return
        if not item.isSelected():
            self.canvas.select([item.ann.id])
        self._mode = "move"
        self._moving = [i for i in self.canvas.visible_items() if i.isSelected()]

    def move(self, pos: QPointF, event: QMouseEvent) -> None:
        if self._mode is None:
            self._hover(pos)
            return
        if not self._moved and self._screen_distance(pos, self._start) < CLICK_SLOP_PX:
            return
        self._moved = True
        w, h = self.canvas.image_size()
        if self._mode == "move":
            delta = pos - self._start
            for item in self._moving:
                item.setPos(delta)
        elif self._mode == "resize" and isinstance(self._item, BoxItem):
            p = _clamp(pos, w, h)
            r = QRectF(self._orig_rect)
            if self._handle in (0, 6, 7):
                r.setLeft(p.x())
            if self._handle in (2, 3, 4):
                r.setRight(p.x())
            if self._handle in (0, 1, 2):
                r.setTop(p.y())
            if self._handle in (4, 5, 6):
                r.setBottom(p.y())
            self._item.set_rect(r.normalized())
        elif self._mode == "vertex" and isinstance(self._item, PolygonItem):
            p = _clamp(pos, w, h)
            parts = [q.copy() for q in self._orig_parts]
            pi, vi = self._vertex
            parts[pi][vi] = (p.x(), p.y())
            self._item.set_parts(parts)

    def _hover(self, pos: QPointF) -> None:
        """Cursor feedback: resize arrows on box handles, a hand on vertices, move over labels."""
        shape = Qt.CursorShape
        found = self._handle_at(pos)
        if found is not None:
            item, index = found
            if isinstance(item, BoxItem):
                arrows = (shape.SizeFDiagCursor, shape.SizeVerCursor, shape.SizeBDiagCursor, shape.SizeHorCursor)
                cursor = arrows[index % 4]
            else:
                cursor = shape.PointingHandCursor
        else:
            cursor = shape.SizeAllCursor if self.canvas.item_at(pos) is not None else shape.ArrowCursor
        self.canvas.view().set_tool_cursor(cursor)

    def release(self, pos: QPointF, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton or self._mode is None:
            return
        mode = self._mode
        w, h = self.canvas.image_size()
        if not self._moved:
            self.cancel()
            return
        if mode == "move":
            pairs = [(i.ann, i.edited(w, h)) for i in self._moving]
            text = "Move label" if len(pairs) == 1 else f"Move {len(pairs)} labels"
        else:
            assert self._item is not None
            pairs = [(self._item.ann, self._item.edited(w, h))]
            text = "Resize box" if mode == "resize" else "Move vertex"
        self.cancel()  # put the items back; the reload after the command shows the result
        self.canvas.edit(pairs, text)

    def double_click(self, pos: QPointF, event: QMouseEvent) -> None:
        selected = [i for i in self.canvas.visible_items() if i.isSelected()]
        if len(selected) != 1 or not isinstance(selected[0], PolygonItem):
            return
        item = selected[0]
        parts = item.parts()
        local = item.mapFromScene(pos)
        p = np.array([local.x(), local.y()])
        tol = self._handle_tolerance()
        for pi, part in enumerate(parts):  # on a vertex: delete it
            d = np.hypot(*(part - p).T)
            vi = int(np.argmin(d))
            if d[vi] <= tol:
                if len(part) > 3:
                    parts[pi] = np.delete(part, vi, axis=0)
                elif len(parts) > 1:
                    del parts[pi]
                else:
                    self.canvas.report("A polygon needs at least 3 vertices.")
                    return
                self.canvas.edit([(item.ann, replace(item.ann, polygons=tuple(parts)))], "Delete vertex")
                return
        best: tuple[float, int, int, np.ndarray] | None = None
        for pi, part in enumerate(parts):  # on an edge: insert a vertex
            a, b = part, np.roll(part, -1, axis=0)
            ab = b - a
            t = np.clip(((p - a) * ab).sum(axis=1) / np.maximum((ab * ab).sum(axis=1), 1e-12), 0, 1)
            nearest = a + ab * t[:, None]
            d = np.hypot(*(nearest - p).T)
            ei = int(np.argmin(d))
            if best is None or d[ei] < best[0]:
                best = (float(d[ei]), pi, ei, nearest[ei])
        if best is not None and best[0] <= self.canvas.tolerance():
            _, pi, ei, q = best
            parts[pi] = np.insert(parts[pi], ei + 1, q, axis=0)
            self.canvas.edit([(item.ann, replace(item.ann, polygons=tuple(parts)))], "Insert vertex")

    def key(self, event: QKeyEvent) -> bool:
        if event.key() == Qt.Key.Key_Escape and self._mode is not None:
            self.cancel()
            return True
        return False


class RubberBand:
    """The dashed rectangle a drag draws from where it started to the pointer, both clamped to the
    image (image pixels); box-drawing tools share it."""

    def __init__(self, canvas: ToolHost, start: QPointF, color: QColor) -> None:
        w, h = canvas.image_size()
        self.canvas = canvas
        self.start = _clamp(start, w, h)
        self.item = QGraphicsRectItem(QRectF(self.start, self.start))
        self.item.setPen(_cosmetic(color, 2.0, dashed=True))
        self.item.setZValue(1000)
        canvas.scene().addItem(self.item)

    def follow(self, pos: QPointF) -> None:
        w, h = self.canvas.image_size()
        self.item.setRect(QRectF(self.start, _clamp(pos, w, h)).normalized())

    def remove(self) -> None:
        if self.item.scene() is not None:
            self.item.scene().removeItem(self.item)


class BandDrag:
    """A box dragged out with the left button (the box and box-to-mask tools): :meth:`begin` on
    the press, :meth:`follow` the mouse, :meth:`end` on the release gives its two corners in the
    image; ``started`` is when it began (the drawing time that the edit log records)."""

    def __init__(self, canvas: ToolHost) -> None:
        self.canvas = canvas
        self.band: RubberBand | None = None
        self.started = 0.0

    @property
    def active(self) -> bool:
        return self.band is not None

    def begin(self, pos: QPointF, color: QColor) -> None:
        self.cancel()
        self.started = time.monotonic()
        self.band = RubberBand(self.canvas, pos, color)

    def follow(self, pos: QPointF) -> None:
        if self.band is not None:
            self.band.follow(pos)

    def end(self, pos: QPointF, event: QMouseEvent) -> tuple[QPointF, QPointF] | None:
        """``(start, end)`` on a left-button release at ``pos`` (the end clamped to the image; the
        band is gone), else ``None``."""
        if self.band is None or event.button() != Qt.MouseButton.LeftButton:
            return None
        start = self.band.start
        self.cancel()
        w, h = self.canvas.image_size()
        return start, _clamp(pos, w, h)

    def cancel(self) -> None:
        if self.band is not None:
            self.band.remove()
            self.band = None


class BoxDragTool(Tool):
    """A tool that starts with a box dragged in the current class: :meth:`dragged` gets its corners."""

    def __init__(self, canvas: ToolHost) -> None:
        super().__init__(canvas)
        self._drag = BandDrag(canvas)

    def press(self, pos: QPointF, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton or self._need_category() is None:
            return
        self._drag.begin(pos, self._class_color())

    def move(self, pos: QPointF, event: QMouseEvent) -> None:
        self._drag.follow(pos)

    def release(self, pos: QPointF, event: QMouseEvent) -> None:
        corners = self._drag.end(pos, event)
        if corners is not None:
            self.dragged(*corners)

    def dragged(self, start: QPointF, end: QPointF) -> None:
        """The box from ``start`` to ``end`` (image pixels, clamped to the image) was dragged."""
        raise NotImplementedError


class BoxTool(BoxDragTool):
    name = "box"
    hint = "Drag a box in the current class; Escape drops it"
    cursor = Qt.CursorShape.CrossCursor

    def cancel(self) -> None:
        self._drag.cancel()

    def dragged(self, start: QPointF, end: QPointF) -> None:
        w, h = self.canvas.image_size()
        box = clamp_box(start.x(), start.y(), end.x(), end.y(), w, h)
        if box[2] < MIN_BOX_SIDE or box[3] < MIN_BOX_SIDE or self._screen_distance(start, end) < CLICK_SLOP_PX:
            return
        scale = self.canvas.view().scale_factor()
        if min(box[2], box[3]) * scale < MIN_BOX_SCREEN_PX:
            self.canvas.report(
                f"Box not drawn: under {MIN_BOX_SCREEN_PX:.0f} screen pixels a side. Zoom in (wheel) to draw a small object."
            )
            return
        cid, image_id = self.canvas.category_id(), self.canvas.current_image_id()
        assert cid is not None and image_id is not None
        ann = Annotation(image_id=image_id, category_id=cid, kind=Kind.BOX, box_xywh=box)
        ids = self.canvas.add([ann], text="Draw box", seconds=time.monotonic() - self._drag.started)
        self.canvas.select(ids)

    def key(self, event: QKeyEvent) -> bool:
        if event.key() == Qt.Key.Key_Escape and self._drag.active:
            self.cancel()
            return True
        return False


class PolygonTool(Tool):
    name = "polygon"
    hint = "Click the vertices; Enter, a double-click or the first point closes it; Backspace takes one back"
    cursor = Qt.CursorShape.CrossCursor

    def __init__(self, canvas: ToolHost) -> None:
        super().__init__(canvas)
        self._vertices: list[QPointF] = []
        self._preview: QGraphicsPathItem | None = None
        self._cursor = QPointF()
        self._t0 = 0.0

    def drawing(self) -> bool:
        return bool(self._vertices)

    def cancel(self) -> None:
        self._vertices = []
        if self._preview is not None:
            if self._preview.scene() is not None:
                self._preview.scene().removeItem(self._preview)
            self._preview = None

    def _refresh(self) -> None:
        if not self._vertices:
            return
        if self._preview is None:
            self._preview = QGraphicsPathItem()
            self._preview.setPen(_cosmetic(self._class_color(), 2.0))
            self._preview.setZValue(1000)
            self.canvas.scene().addItem(self._preview)
        path = QPainterPath(self._vertices[0])
        for v in self._vertices[1:]:
            path.lineTo(v)
        path.lineTo(self._cursor)
        self._preview.setPath(path)
        for child in self._preview.childItems():
            self.canvas.scene().removeItem(child)  # also detaches it from the preview
        if len(self._vertices) >= 2:  # where the polygon will close, dashed
            closing = QGraphicsPathItem(self._preview)
            closing_path = QPainterPath(self._cursor)
            closing_path.lineTo(self._vertices[0])
            closing.setPath(closing_path)
            closing.setPen(_cosmetic(self._class_color(), 1.0, dashed=True))
        for v in self._vertices:
            Handle(v, self._class_color(), self._preview)

    def press(self, pos: QPointF, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton or self._need_category() is None:
            return
        w, h = self.canvas.image_size()
        p = _clamp(pos, w, h)
        if not self._vertices:
            self._t0 = time.monotonic()
        elif len(self._vertices) >= 3 and self._screen_distance(p, self._vertices[0]) <= style.HANDLE_SIZE:
            self.finish()
            return
        if self._vertices and self._screen_distance(p, self._vertices[-1]) < CLICK_SLOP_PX:
            return  # the same point again (a double click's first half)
        self._vertices.append(p)
        self._cursor = p
        self._refresh()

    def move(self, pos: QPointF, event: QMouseEvent) -> None:
        if self._vertices:
            w, h = self.canvas.image_size()
            self._cursor = _clamp(pos, w, h)
            self._refresh()

    def double_click(self, pos: QPointF, event: QMouseEvent) -> None:
        if len(self._vertices) >= 3:
            self.finish()

    def finish(self) -> None:
        """Close the polygon and store it (with at least 3 vertices), else keep drawing."""
        if len(self._vertices) < 3:
            return
        cid, image_id = self.canvas.category_id(), self.canvas.current_image_id()
        points = np.array([(v.x(), v.y()) for v in self._vertices], dtype=np.float64)
        self.cancel()
        if cid is None or image_id is None:
            return
        ann = Annotation(image_id=image_id, category_id=cid, kind=Kind.POLYGON, polygons=(points,))
        ids = self.canvas.add([ann], text="Draw polygon", seconds=time.monotonic() - self._t0)
        self.canvas.select(ids)

    def wants_key(self, event: QKeyEvent) -> bool:
        keys = (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Escape, Qt.Key.Key_Backspace)
        return bool(self._vertices) and event.key() in keys

    def key(self, event: QKeyEvent) -> bool:
        if not self._vertices:
            return False
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.finish()
            return True
        if event.key() == Qt.Key.Key_Escape:
            self.cancel()
            return True
        if event.key() == Qt.Key.Key_Backspace:
            self._vertices.pop()
            if self._vertices:
                self._refresh()
            else:
                self.cancel()
            return True
        return False


class BrushTool(Tool):
    """Brush (``erase=False``) or eraser (``erase=True``) of ``canvas.brush_size()`` pixels across."""

    name = "brush"
    cursor = Qt.CursorShape.CrossCursor

    def __init__(self, canvas: ToolHost, *, erase: bool = False) -> None:
        super().__init__(canvas)
        self.erase = erase
        self.name = "eraser" if erase else "brush"
        self.hint = (
            "Drag to erase from the masks under the pointer" if erase else "Drag to paint a mask in the current class"
        ) + "; [ and ] change the size"
        self._points: list[tuple[float, float]] = []
        self._target: MaskItem | None = None
        self._stroke: QGraphicsPathItem | None = None
        self._ring: QGraphicsEllipseItem | None = None
        self._t0 = 0.0

    def activate(self) -> None:
        self.settings_changed()

    def deactivate(self) -> None:
        self.cancel()
        if self._ring is not None:
            if self._ring.scene() is not None:
                self._ring.scene().removeItem(self._ring)
            self._ring = None

    def cancel(self) -> None:
        self._points = []
        self._target = None
        if self._stroke is not None:
            if self._stroke.scene() is not None:
                self._stroke.scene().removeItem(self._stroke)
            self._stroke = None

    def settings_changed(self) -> None:
        if self._ring is not None:
            c = self._ring.rect().center()
            r = self.canvas.brush_size() / 2.0
            self._ring.setRect(QRectF(c.x() - r, c.y() - r, 2 * r, 2 * r))

    def items_reloaded(self) -> None:
        if self._target is not None and self._target.scene() is None:
            # Its item was rebuilt: paint into the new one (or, if it is gone, start a new mask).
            replaced = self.canvas.annotation_items().get(self._target.ann.id or -1)
            self._target = replaced if isinstance(replaced, MaskItem) else None
            if self._target is None and self.erase:
                self.cancel()

    def _show_ring(self, pos: QPointF) -> None:
        r = self.canvas.brush_size() / 2.0
        if self._ring is None or self._ring.scene() is None:
            self._ring = QGraphicsEllipseItem()
            self._ring.setPen(_cosmetic(QColor(255, 255, 255) if self.erase else self._class_color(), 1.5))
            self._ring.setZValue(1001)
            self._ring.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable, False)
            self.canvas.scene().addItem(self._ring)
        self._ring.setRect(QRectF(pos.x() - r, pos.y() - r, 2 * r, 2 * r))

    def _find_target(self, pos: QPointF) -> MaskItem | None:
        masks = [i for i in self.canvas.visible_items() if isinstance(i, MaskItem)]
        selected = [i for i in masks if i.isSelected()]
        if self.erase:
            if selected:
                return selected[0]
            under = [i for i in masks if i.hit(pos, 0.0)]
            return min(under, key=lambda i: i.area()) if under else None
        cid = self.canvas.category_id()
        same = [i for i in selected if i.ann.category_id == cid]
        if same:
            return same[0]
        human = [i for i in masks if i.ann.category_id == cid and not i.proposal]
        return human[0] if human else None

    def press(self, pos: QPointF, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        if not self.erase and self._need_category() is None:
            return
        if self._masks_refused():
            return
        self.cancel()
        self._target = self._find_target(pos)
        if self.erase and self._target is None:
            return
        self._t0 = time.monotonic()
        self._points = [(pos.x(), pos.y())]
        self._stroke = QGraphicsPathItem()
        color = QColor(255, 255, 255, 150) if self.erase else QColor(self._class_color())
        if not self.erase:
            color.setAlpha(150)
        pen = QPen(color, float(self.canvas.brush_size()))
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
        self._stroke.setPen(pen)
        self._stroke.setZValue(999)
        self.canvas.scene().addItem(self._stroke)
        self._update_stroke()

    def _update_stroke(self) -> None:
        if self._stroke is None or not self._points:
            return
        path = QPainterPath(QPointF(*self._points[0]))
        for x, y in self._points[1:]:
            path.lineTo(x, y)
        if len(self._points) == 1:
            path.lineTo(self._points[0][0] + 0.01, self._points[0][1])
        self._stroke.setPath(path)

    def move(self, pos: QPointF, event: QMouseEvent) -> None:
        self._show_ring(pos)
        if self._stroke is None:
            return
        last = self._points[-1]
        if np.hypot(pos.x() - last[0], pos.y() - last[1]) >= 0.5:
            self._points.append((pos.x(), pos.y()))
            self._update_stroke()

    def release(self, pos: QPointF, event: QMouseEvent) -> None:
        if self._stroke is None or event.button() != Qt.MouseButton.LeftButton:
            return
        points, target = list(self._points), self._target
        seconds = time.monotonic() - self._t0
        self.cancel()
        w, h = self.canvas.image_size()
        diameter = float(self.canvas.brush_size())
        # Rasterise only around the stroke: big images stay quick.
        x0, y0, x1, y1 = stroke_bounds(points, diameter, w, h)
        if x1 <= x0 or y1 <= y0:
            return
        stroke = stroke_mask([(x - x0, y - y0) for x, y in points], diameter, y1 - y0, x1 - x0)
        if target is None:  # the brush starts a new mask
            cid, image_id = self.canvas.category_id(), self.canvas.current_image_id()
            if cid is None or image_id is None or not stroke.any():
                return
            full = np.zeros((h, w), dtype=bool)
            full[y0:y1, x0:x1] = stroke
            rle = encode_mask(full)
            ann = Annotation(image_id=image_id, category_id=cid, kind=Kind.MASK, rle=rle)
            self.canvas.remember_mask(rle, full)
            self.canvas.select(self.canvas.add([ann], text="Paint mask", seconds=seconds))
            return
        mask = target.full_mask(w, h)
        region = mask[y0:y1, x0:x1]
        painted = paint_into(region, stroke, erase=self.erase)
        if np.array_equal(region, painted):
            return
        mask[y0:y1, x0:x1] = painted
        if not mask.any():
            self.canvas.change([(target.ann, None)], "Erase mask")
            return
        rle = encode_mask(mask)
        edited = replace(target.ann, rle=rle)
        self.canvas.remember_mask(rle, mask)
        text = "Erase" if self.erase else "Paint mask"
        if self.canvas.change([(target.ann, edited)], text, seconds=None if self.erase else seconds):
            assert target.ann.id is not None
            self.canvas.select([target.ann.id])


class EraserTool(BrushTool):
    name = "eraser"

    def __init__(self, canvas: ToolHost) -> None:
        super().__init__(canvas, erase=True)


TOOLS: dict[str, type[Tool]] = {
    "select": SelectTool,
    "box": BoxTool,
    "polygon": PolygonTool,
    "brush": BrushTool,
    "eraser": EraserTool,
}

"""The canvas's QGraphicsView: zoom on the wheel around the cursor, pan, fit, 1:1.

Panning is middle-button drag, or left-button drag while Space is held. Every other mouse event
goes, in scene coordinates, to the ``MouseHandler`` (the canvas, which passes it to the active
tool), so the view itself never moves or selects items.
"""

from __future__ import annotations

from typing import Protocol

from PySide6.QtCore import QEvent, QPoint, QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QContextMenuEvent,
    QFocusEvent,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QFrame, QGraphicsScene, QGraphicsView, QWidget

#: Zoom limits: down to a quarter of "fit to window", up to 64 screen pixels per image pixel
#: (or 4 x fit for tiny images).
MIN_OF_FIT = 0.25
MAX_SCALE = 64.0
#: Zoom factor per wheel notch (120 units of angle delta).
WHEEL_STEP = 1.25


class MouseHandler(Protocol):
    def mouse_press(self, pos: QPointF, event: QMouseEvent) -> None: ...
    def mouse_move(self, pos: QPointF, event: QMouseEvent) -> None: ...
    def mouse_release(self, pos: QPointF, event: QMouseEvent) -> None: ...
    def mouse_double_click(self, pos: QPointF, event: QMouseEvent) -> None: ...
    def mouse_left(self) -> None: ...
    def context_menu(self, pos: QPointF, global_pos: QPoint) -> None: ...
    def key_press(self, event: QKeyEvent) -> bool: ...
    def wants_key(self, event: QKeyEvent) -> bool: ...


class CanvasView(QGraphicsView):
    """Shows the scene (image pixels) and turns mouse and keys into tool calls and view moves.

    ``zoomChanged(scale)`` reports screen pixels per image pixel after every zoom.
    """

    zoomChanged = Signal(float)

    def __init__(self, scene: QGraphicsScene, parent: QWidget | None = None) -> None:
        super().__init__(scene, parent)
        self.handler: MouseHandler | None = None
        self._content = QRectF()
        self._fit_mode = True  # refit on resize until the user zooms
        self._space_down = False
        self._pan_from: QPoint | None = None
        self._tool_cursor = Qt.CursorShape.ArrowCursor
        self._notice = ""
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setBackgroundBrush(QColor(48, 48, 48))
        self.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setDragMode(QGraphicsView.DragMode.NoDrag)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.setOptimizationFlag(QGraphicsView.OptimizationFlag.DontAdjustForAntialiasing, True)
        self.setMouseTracking(True)
        self.viewport().setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

    # ---- content and zoom ---------------------------------------------------------------

    def set_content_rect(self, rect: QRectF) -> None:
        """The image's rect; the scene gets a wide margin around it so zoom and pan feel free."""
        self._content = QRectF(rect)
        margin = max(rect.width(), rect.height(), 1.0)
        self.setSceneRect(rect.adjusted(-margin, -margin, margin, margin))

    def scale_factor(self) -> float:
        """Screen pixels per image pixel."""
        return float(self.transform().m11())

    def fit_scale(self) -> float:
        """The zoom at which the whole image just fits the viewport (1.0 with no image)."""
        if self._content.isEmpty():
            return 1.0
        vp = self.viewport().rect()
        return min(vp.width() / self._content.width(), vp.height() / self._content.height())

    def fit(self) -> None:
        """Show the whole image, centred, as large as fits; later resizes keep it fitted."""
        self._fit_mode = True
        if self._content.isEmpty():
            return
        self.fitInView(self._content, Qt.AspectRatioMode.KeepAspectRatio)
        self.zoomChanged.emit(self.scale_factor())

    def actual_size(self) -> None:
        """One image pixel per screen pixel, keeping the point at the view's centre in place."""
        self._fit_mode = False
        centre = self.mapToScene(self.viewport().rect().center())
        self.resetTransform()
        self.centerOn(centre)
        self.zoomChanged.emit(self.scale_factor())

    def zoom_by(self, factor: float, anchor: QPoint | None = None) -> None:
        """Zoom by ``factor`` keeping the scene point under viewport point ``anchor`` fixed."""
        current = self.scale_factor()
        fit = self.fit_scale()
        target = min(max(current * factor, fit * MIN_OF_FIT), max(MAX_SCALE, fit * 4.0))
        if current <= 0 or abs(target - current) < 1e-12:
            return
        self._fit_mode = False
        anchor = anchor if anchor is not None else self.viewport().rect().center()
        before = self.mapToScene(anchor)
        self.scale(target / current, target / current)
        moved = self.mapToScene(anchor) - before
        self._scroll_by_scene(QPointF(-moved.x(), -moved.y()))
        self.zoomChanged.emit(self.scale_factor())

    def _scroll_by_scene(self, delta: QPointF) -> None:
        s = self.scale_factor()
        h, v = self.horizontalScrollBar(), self.verticalScrollBar()
        h.setValue(h.value() + round(delta.x() * s))
        v.setValue(v.value() + round(delta.y() * s))

    def pan_by(self, dx: int, dy: int) -> None:
        """Move the picture by ``(dx, dy)`` screen pixels (as if dragged)."""
        h, v = self.horizontalScrollBar(), self.verticalScrollBar()
        h.setValue(h.value() - dx)
        v.setValue(v.value() - dy)

    def set_tool_cursor(self, cursor: Qt.CursorShape) -> None:
        self._tool_cursor = cursor
        if self._pan_from is None and not self._space_down:
            self.viewport().setCursor(cursor)

    def set_notice(self, text: str) -> None:
        """A message drawn over the middle of the view (why no image shows, what to do); ``""`` for none."""
        if text != self._notice:
            self._notice = text
            self.viewport().update()

    def notice(self) -> str:
        return self._notice

    def drawForeground(self, painter: QPainter, rect: QRectF | QRect) -> None:
        super().drawForeground(painter, rect)
        if not self._notice:
            return
        painter.save()
        painter.resetTransform()
        area = self.viewport().rect().adjusted(24, 24, -24, -24)
        painter.setPen(QColor(230, 230, 230))
        font = painter.font()
        font.setPointSizeF(max(font.pointSizeF(), 11.0))
        painter.setFont(font)
        painter.drawText(area, int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap), self._notice)
        painter.restore()

    # ---- events -------------------------------------------------------------------------

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self._fit_mode:
            self.fit()

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120.0
        if steps == 0:
            event.ignore()
            return
        self.zoom_by(WHEEL_STEP**steps, event.position().toPoint())
        event.accept()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.MiddleButton or (
            event.button() == Qt.MouseButton.LeftButton and self._space_down
        ):
            self._pan_from = event.position().toPoint()
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            event.accept()
            return
        self.setFocus(Qt.FocusReason.MouseFocusReason)
        if self.handler is not None:
            self.handler.mouse_press(self.mapToScene(event.position().toPoint()), event)
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._pan_from is not None:
            now = event.position().toPoint()
            delta = now - self._pan_from
            self._pan_from = now
            self.pan_by(delta.x(), delta.y())
            event.accept()
            return
        if self.handler is not None:
            self.handler.mouse_move(self._scene_pos(event), event)
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._pan_from is not None and event.button() in (Qt.MouseButton.MiddleButton, Qt.MouseButton.LeftButton):
            self._pan_from = None
            self.viewport().setCursor(Qt.CursorShape.OpenHandCursor if self._space_down else self._tool_cursor)
            event.accept()
            return
        if self.handler is not None:
            self.handler.mouse_release(self._scene_pos(event), event)
        event.accept()

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        if self.handler is not None and not self._space_down:
            self.handler.context_menu(self.mapToScene(event.pos()), event.globalPos())
        event.accept()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        if self.handler is not None and event.button() == Qt.MouseButton.LeftButton and not self._space_down:
            self.handler.mouse_double_click(self._scene_pos(event), event)
        event.accept()

    def _scene_pos(self, event: QMouseEvent) -> QPointF:
        return self.mapToScene(event.position().toPoint())

    def event(self, event: QEvent) -> bool:
        # Keys the canvas needs right now (Space to pan; Enter / Escape / Backspace while drawing)
        # win over window shortcuts bound to the same keys.
        if event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent):
            plain = event.modifiers() in (Qt.KeyboardModifier.NoModifier, Qt.KeyboardModifier.KeypadModifier)
            wanted = self.handler is not None and self.handler.wants_key(event)
            if plain and (event.key() == Qt.Key.Key_Space or wanted):
                event.accept()
                return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space:
            if not event.isAutoRepeat():
                self._space_down = True
                if self._pan_from is None:
                    self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
            event.accept()
            return
        if event.key() == Qt.Key.Key_F and event.modifiers() == Qt.KeyboardModifier.NoModifier:
            self.fit()
            event.accept()
            return
        if self.handler is not None and self.handler.key_press(event):
            event.accept()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_down = False
            if self._pan_from is None:
                self.viewport().setCursor(self._tool_cursor)
            event.accept()
            return
        super().keyReleaseEvent(event)

    def leaveEvent(self, event: QEvent) -> None:
        super().leaveEvent(event)
        if self.handler is not None:
            self.handler.mouse_left()

    def focusOutEvent(self, event: QFocusEvent) -> None:
        self._space_down = False
        super().focusOutEvent(event)

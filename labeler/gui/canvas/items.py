"""Graphics items for annotations: box, polygon and mask, with a class tag and edit handles.

Items live in scene coordinates = image pixels. Each keeps the :class:`Annotation` it shows
(``item.ann``); tools change an item's geometry live while the mouse moves (``set_rect``,
``set_polygons``, ``setPos`` for moves) and ask it for the edited annotation on release
(:meth:`AnnotationItem.edited`). The store is changed only by the undo commands.

Tags and handles ignore the view's zoom (``ItemIgnoresTransformations``): class names stay
legible, handles stay grabbable, at every zoom.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontMetricsF,
    QImage,
    QPainter,
    QPainterPath,
    QPen,
    QPolygonF,
)
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from labeler.core.annotation import Annotation, Category, Kind
from labeler.core.geometry import decode_rle

from . import style


class LabelTag(QGraphicsItem):
    """The class name (and a proposal's score) on a small coloured plate, at a fixed screen size."""

    def __init__(self, text: str, color: QColor, *, proposal: bool, parent: QGraphicsItem) -> None:
        super().__init__(parent)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations, True)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self._text = text
        self._color = QColor(color)
        self._proposal = proposal
        self._font = QFont()
        self._font.setPointSizeF(9.0)
        self._font.setBold(True)
        metrics = QFontMetricsF(self._font)
        self._rect = QRectF(0, -metrics.height() - 4, metrics.horizontalAdvance(text) + 8, metrics.height() + 4)

    def text(self) -> str:
        return self._text

    def hang_below(self) -> None:
        """Sit just below the anchor instead of above it (a mask's tag then does not cover the
        tag of a box that shares its top-left corner, as a box proposal around it often does)."""
        self.prepareGeometryChange()
        self._rect.moveTop(0)

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        plate = QColor(self._color)
        if self._proposal:
            plate.setAlpha(170)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(plate)
        painter.drawRect(self._rect)
        painter.setFont(self._font)
        painter.setPen(style.text_color_on(self._color))
        painter.drawText(self._rect, Qt.AlignmentFlag.AlignCenter, self._text)


class Handle(QGraphicsItem):
    """A small square marker (resize handle, polygon vertex) of fixed screen size."""

    def __init__(self, pos: QPointF, color: QColor, parent: QGraphicsItem) -> None:
        super().__init__(parent)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations, True)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.setPos(pos)
        self._color = QColor(color)
        s = style.HANDLE_SIZE
        self._rect = QRectF(-s / 2, -s / 2, s, s)

    def boundingRect(self) -> QRectF:
        return self._rect.adjusted(-1, -1, 1, 1)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        painter.setPen(QPen(QColor(0, 0, 0), 1))
        painter.setBrush(QBrush(QColor(255, 255, 255)))
        painter.drawRect(self._rect)
        inner = self._rect.adjusted(2, 2, -2, -2)
        painter.fillRect(inner, self._color)


class AnnotationItem(QGraphicsItem):
    """Base of the annotation items: the annotation, its class, its tag and its selection look."""

    def __init__(self, ann: Annotation, category: Category | None) -> None:
        super().__init__()
        self.ann = ann
        self.category = category
        self.color = style.category_color(category)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable, True)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)  # the tools handle the mouse
        name = category.name if category is not None else f"class {ann.category_id}"
        self.tag = LabelTag(
            style.label_text(name, ann.score, proposal=ann.is_proposal),
            self.color,
            proposal=ann.is_proposal,
            parent=self,
        )
        self._handles: list[Handle] = []

    @property
    def proposal(self) -> bool:
        return self.ann.is_proposal

    def pen(self) -> QPen:
        return style.outline_pen(self.color, proposal=self.proposal, selected=self.isSelected())

    def itemChange(self, change: QGraphicsItem.GraphicsItemChange, value: object) -> object:
        if change == QGraphicsItem.GraphicsItemChange.ItemSelectedHasChanged:
            self.refresh_handles()
        return super().itemChange(change, value)

    def refresh_handles(self) -> None:
        """Rebuild the handles for the current geometry (shown only while selected)."""
        for h in self._handles:
            scene = h.scene()
            if scene is not None:
                scene.removeItem(h)  # also detaches it from this item
        self._handles = []
        if self.isSelected():
            self._handles = [Handle(p, self.color, self) for p in self.handle_points()]
        self.update()

    # ---- for subclasses -------------------------------------------------------------------

    def handle_points(self) -> list[QPointF]:
        """Where the handles sit, in item coordinates."""
        return []

    def area(self) -> float:
        """Area in square pixels (the smaller of overlapping items wins a click)."""
        raise NotImplementedError

    def hit(self, pos: QPointF, tolerance: float) -> bool:
        """True if scene point ``pos`` is on the item (``tolerance`` in pixels, for thin shapes)."""
        raise NotImplementedError

    def edited(self, width: int, height: int) -> Annotation:
        """The annotation with this item's current geometry (after live edits), in the image."""
        raise NotImplementedError

    def _place_tag(self, top_left: QPointF) -> None:
        self.tag.setPos(top_left)


class BoxItem(AnnotationItem):
    """A box: ``rect`` is ``(x, y, w, h)`` in pixels."""

    def __init__(self, ann: Annotation, category: Category | None) -> None:
        super().__init__(ann, category)
        assert ann.box_xywh is not None
        x, y, w, h = ann.box_xywh
        self._rect = QRectF(x, y, w, h)
        self._place_tag(self._rect.topLeft())
        self.setZValue(20)

    def rect(self) -> QRectF:
        return QRectF(self._rect)

    def set_rect(self, rect: QRectF) -> None:
        self.prepareGeometryChange()
        self._rect = QRectF(rect).normalized()
        self._place_tag(self._rect.topLeft())
        self.refresh_handles()

    def handle_points(self) -> list[QPointF]:
        r = self._rect
        cx, cy = r.center().x(), r.center().y()
        return [
            QPointF(r.left(), r.top()),
            QPointF(cx, r.top()),
            QPointF(r.right(), r.top()),
            QPointF(r.right(), cy),
            QPointF(r.right(), r.bottom()),
            QPointF(cx, r.bottom()),
            QPointF(r.left(), r.bottom()),
            QPointF(r.left(), cy),
        ]

    def area(self) -> float:
        return self._rect.width() * self._rect.height()

    def hit(self, pos: QPointF, tolerance: float) -> bool:
        p = self.mapFromScene(pos)
        return self._rect.adjusted(-tolerance, -tolerance, tolerance, tolerance).contains(p)

    def edited(self, width: int, height: int) -> Annotation:
        r = self._rect.translated(self.pos())
        x0, x1 = min(max(r.left(), 0.0), width), min(max(r.right(), 0.0), width)
        y0, y1 = min(max(r.top(), 0.0), height), min(max(r.bottom(), 0.0), height)
        return replace(self.ann, box_xywh=(x0, y0, x1 - x0, y1 - y0))

    def boundingRect(self) -> QRectF:
        return self._rect.adjusted(-1, -1, 1, 1)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        selected = self.isSelected()
        painter.setBrush(style.fill_brush(self.color, proposal=self.proposal, selected=selected))
        painter.setPen(style.halo_pen(selected=selected))
        painter.drawRect(self._rect)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(self.pen())
        painter.drawRect(self._rect)


def _polygon_path(parts: list[np.ndarray]) -> QPainterPath:
    path = QPainterPath()
    path.setFillRule(Qt.FillRule.WindingFill)
    for part in parts:
        path.addPolygon(QPolygonF([QPointF(float(x), float(y)) for x, y in part]))
        path.closeSubpath()
    return path


class PolygonItem(AnnotationItem):
    """A polygon of one or more parts, each an ``(N, 2)`` array of pixel vertices."""

    def __init__(self, ann: Annotation, category: Category | None) -> None:
        super().__init__(ann, category)
        assert ann.polygons is not None
        self._parts = [np.array(p, dtype=np.float64) for p in ann.polygons]
        self._path = _polygon_path(self._parts)
        self._place_tag(self._path.boundingRect().topLeft())
        self.setZValue(10)

    def parts(self) -> list[np.ndarray]:
        """Copies of the vertex arrays, in item coordinates."""
        return [p.copy() for p in self._parts]

    def set_parts(self, parts: list[np.ndarray]) -> None:
        self.prepareGeometryChange()
        self._parts = [np.array(p, dtype=np.float64) for p in parts]
        self._path = _polygon_path(self._parts)
        self._place_tag(self._path.boundingRect().topLeft())
        self.refresh_handles()

    def handle_points(self) -> list[QPointF]:
        return [QPointF(float(x), float(y)) for part in self._parts for x, y in part]

    def area(self) -> float:
        r = self._path.boundingRect()
        return r.width() * r.height()

    def hit(self, pos: QPointF, tolerance: float) -> bool:
        p = self.mapFromScene(pos)
        if self._path.contains(p):
            return True
        return vertex_or_edge_distance(self._parts, (p.x(), p.y())) <= tolerance

    def edited(self, width: int, height: int) -> Annotation:
        offset = np.array([self.pos().x(), self.pos().y()])
        parts = tuple(np.clip(p + offset, (0.0, 0.0), (float(width), float(height))) for p in self._parts)
        return replace(self.ann, polygons=parts)

    def boundingRect(self) -> QRectF:
        return self._path.boundingRect().adjusted(-1, -1, 1, 1)

    def shape(self) -> QPainterPath:
        return self._path

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        selected = self.isSelected()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setBrush(style.fill_brush(self.color, proposal=self.proposal, selected=selected))
        painter.setPen(style.halo_pen(selected=selected))
        painter.drawPath(self._path)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(self.pen())
        painter.drawPath(self._path)


def vertex_or_edge_distance(parts: list[np.ndarray], point: tuple[float, float]) -> float:
    """Distance in pixels from ``point`` to the nearest edge of any closed part."""
    best = float("inf")
    p = np.asarray(point, dtype=np.float64)
    for part in parts:
        a = part
        b = np.roll(part, -1, axis=0)
        ab = b - a
        denom = np.maximum((ab * ab).sum(axis=1), 1e-12)
        t = np.clip(((p - a) * ab).sum(axis=1) / denom, 0.0, 1.0)
        nearest = a + ab * t[:, None]
        best = min(best, float(np.sqrt(((nearest - p) ** 2).sum(axis=1)).min()))
    return best


def mask_outline(crop: np.ndarray, x0: int, y0: int) -> QPainterPath:
    """Outline (outer edges and holes) of a bool mask crop placed at ``(x0, y0)``, in pixels.

    Contours run along pixel edges to within ``1 / (2k)`` pixel: the crop is traced at ``k``
    times its size (k = 4 for crops up to 0.25 Mpx, 2 up to 2 Mpx, else 1).
    """
    path = QPainterPath()
    if not crop.size or not crop.any():
        return path
    k = 4 if crop.size <= 250_000 else 2 if crop.size <= 2_000_000 else 1
    traced = crop.astype(np.uint8)
    if k > 1:
        traced = np.repeat(np.repeat(traced, k, axis=0), k, axis=1)
    contours, _ = cv2.findContours(traced, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    for contour in contours:
        pts = (contour.reshape(-1, 2).astype(np.float64) + 0.5) / k + (x0, y0)
        path.addPolygon(QPolygonF([QPointF(float(x), float(y)) for x, y in pts]))
        path.closeSubpath()
    return path


#: Masks whose bounding box has more pixels than this are drawn from 8-bit indexed pixels.
ARGB_MAX_PIXELS = 4_000_000


class MaskItem(AnnotationItem):
    """A mask drawn as translucent class colour, with its outline.

    Only the mask's bounding box is kept in memory (``_crop``, bool, and an ARGB image of it), so
    many masks on a big image stay cheap.
    """

    def __init__(self, ann: Annotation, category: Category | None, mask: np.ndarray | None = None) -> None:
        """``mask``: the decoded ``ann.rle`` if the caller has it (saves decoding a big mask again)."""
        super().__init__(ann, category)
        assert ann.rle is not None
        if mask is None:
            mask = decode_rle(ann.rle)
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        if rows.size:
            y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        else:
            y0 = y1 = x0 = x1 = 0
        self._origin = (x0, y0)
        self._crop = np.ascontiguousarray(mask[y0:y1, x0:x1])
        self._image, self._pixels = self._render()
        self._outline = mask_outline(self._crop, x0, y0)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)
        self.tag.hang_below()
        self._place_tag(inside_point(self._crop, x0, y0))  # inside the region, not in a shared corner
        self.setZValue(0)
        # the opacity slider dims the mask, not its class tag
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemDoesntPropagateOpacityToChildren, True)

    def _render(self) -> tuple[QImage, np.ndarray]:
        """The overlay image of the crop: 32-bit premultiplied pixels (fast to draw) up to
        :data:`ARGB_MAX_PIXELS`; above that an 8-bit indexed image over the crop's own bytes
        (no extra memory: a full-image mask on 8000 x 8000 pixels would take 256 MB as 32-bit)."""
        h, w = self._crop.shape
        alpha = style.PROPOSAL_MASK_ALPHA if self.proposal else style.MASK_ALPHA
        c = self.color
        r, g, b = (v * alpha // 255 for v in (c.red(), c.green(), c.blue()))
        word = (alpha << 24) | (r << 16) | (g << 8) | b  # premultiplied
        if h == 0 or w == 0:
            pixels = np.zeros((1, 1), dtype=np.uint32)
            return QImage(pixels.data, 1, 1, 4, QImage.Format.Format_ARGB32_Premultiplied), pixels
        if self._crop.size > ARGB_MAX_PIXELS:
            pixels = self._crop.view(np.uint8)
            image = QImage(pixels.data, w, h, int(pixels.strides[0]), QImage.Format.Format_Indexed8)
            image.setColorTable([0, (alpha << 24) | (c.red() << 16) | (c.green() << 8) | c.blue()])  # not premultiplied
            return image, pixels
        pixels = np.zeros((h, w), dtype=np.uint32)  # native-endian words: 0xAARRGGBB as Qt wants
        pixels[self._crop] = word
        return QImage(pixels.data, w, h, w * 4, QImage.Format.Format_ARGB32_Premultiplied), pixels

    def full_mask(self, width: int, height: int) -> np.ndarray:
        """The mask as an ``(height, width)`` bool array (at its stored place, ignoring live moves)."""
        out = np.zeros((height, width), dtype=bool)
        x0, y0 = self._origin
        h, w = self._crop.shape
        out[y0 : y0 + h, x0 : x0 + w] = self._crop[: max(0, height - y0), : max(0, width - x0)]
        return out

    def pixel_count(self) -> int:
        return int(self._crop.sum())

    def area(self) -> float:
        return float(self.pixel_count())

    def hit(self, pos: QPointF, tolerance: float) -> bool:
        p = self.mapFromScene(pos)
        col, row = int(np.floor(p.x())) - self._origin[0], int(np.floor(p.y())) - self._origin[1]
        h, w = self._crop.shape
        return 0 <= row < h and 0 <= col < w and bool(self._crop[row, col])

    def edited(self, width: int, height: int) -> Annotation:
        from labeler.gui.canvas.edits import translate

        return translate(self.ann, self.pos().x(), self.pos().y(), width, height)

    def boundingRect(self) -> QRectF:
        x0, y0 = self._origin
        h, w = self._crop.shape
        return QRectF(x0, y0, w, h).adjusted(-1, -1, 1, 1)

    def shape(self) -> QPainterPath:
        path = QPainterPath()
        x0, y0 = self._origin
        h, w = self._crop.shape
        path.addRect(QRectF(x0, y0, w, h))
        return path

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        x0, y0 = self._origin
        h, w = self._crop.shape
        if h and w:
            # Only the exposed part, in whole pixels of the crop.
            exposed = option.exposedRect.intersected(QRectF(x0, y0, w, h))
            if not exposed.isEmpty():
                sx0, sy0 = max(0, int(exposed.left()) - x0), max(0, int(exposed.top()) - y0)
                sx1 = min(w, int(np.ceil(exposed.right())) - x0 + 1)
                sy1 = min(h, int(np.ceil(exposed.bottom())) - y0 + 1)
                if sx1 > sx0 and sy1 > sy0:
                    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
                    if self.isSelected():
                        painter.setOpacity(min(1.0, painter.opacity() * 1.6))
                    painter.drawImage(
                        QRectF(x0 + sx0, y0 + sy0, sx1 - sx0, sy1 - sy0),
                        self._image,
                        QRectF(sx0, sy0, sx1 - sx0, sy1 - sy0),
                    )
                    painter.setOpacity(1.0)
        if self.proposal:  # hatched all over: a proposal never looks like an accepted mask
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QBrush(self.color, Qt.BrushStyle.BDiagPattern))
            painter.drawPath(self._outline)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(self.pen())
        painter.drawPath(self._outline)


def inside_point(crop: np.ndarray, x0: int, y0: int) -> QPointF:
    """The point of a mask crop deepest inside the region (farthest from its edge), in image
    pixels: where its class tag goes. Big crops are measured on a coarser grid."""
    h, w = crop.shape
    if not h or not w:
        return QPointF(x0, y0)
    step = max(1, int(np.ceil(max(h, w) / 512)))
    small = np.ascontiguousarray(crop[::step, ::step]).astype(np.uint8)
    padded = np.pad(small, 1)  # the crop's border counts as edge
    depth = cv2.distanceTransform(padded, cv2.DIST_L2, 3)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return QPointF(float(x0 + int(x) * step), float(y0 + int(y) * step))


def make_item(ann: Annotation, category: Category | None, mask: np.ndarray | None = None) -> AnnotationItem:
    """The graphics item for an annotation of any kind (``mask``: a mask's pixels, if known)."""
    if ann.kind is Kind.BOX:
        return BoxItem(ann, category)
    if ann.kind is Kind.POLYGON:
        return PolygonItem(ann, category)
    return MaskItem(ann, category, mask)

"""A tiny line plot drawn with QPainter: training loss and validation metric over steps.

Two series share the x axis (step or epoch); each has its own y range (loss on the left axis,
metric on the right), so both stay readable without a plotting dependency.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget


class Series:
    """Points ``(x, y)`` of one curve, with its colour and label."""

    def __init__(self, label: str, color: QColor) -> None:
        self.label = label
        self.color = color
        self.points: list[tuple[float, float]] = []

    def add(self, x: float, y: float) -> None:
        if math.isfinite(x) and math.isfinite(y):
            self.points.append((float(x), float(y)))

    def y_range(self) -> tuple[float, float]:
        ys = [p[1] for p in self.points]
        lo, hi = min(ys), max(ys)
        if hi - lo < 1e-9:
            pad = abs(hi) * 0.1 or 1.0
            return lo - pad, hi + pad
        pad = (hi - lo) * 0.05
        return lo - pad, hi + pad


class LossPlot(QWidget):
    """Loss (left axis) and validation metric (right axis) against training step."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loss_series = Series("loss", QColor(230, 110, 40))
        self.metric_series = Series("validation", QColor(50, 140, 230))
        self.setMinimumHeight(120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:
        return QSize(280, 160)

    def clear(self, metric_label: str = "validation") -> None:
        self.loss_series.points.clear()
        self.metric_series.points.clear()
        self.metric_series.label = metric_label
        self.update()

    def add_loss(self, x: float, y: float) -> None:
        self.loss_series.add(x, y)
        self.update()

    def add_metric(self, x: float, y: float) -> None:
        self.metric_series.add(x, y)
        self.update()

    def paintEvent(self, _event: object) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        painter.fillRect(self.rect(), palette.base())
        fm = painter.fontMetrics()
        margin_l = fm.horizontalAdvance("-0.0000") + 8
        margin_r = fm.horizontalAdvance("-0.0000") + 8
        area = QRectF(margin_l, fm.height() + 6, self.width() - margin_l - margin_r, self.height() - 2 * fm.height() - 12)
        painter.setPen(QPen(palette.mid().color()))
        painter.drawRect(area)
        series = [s for s in (self.loss_series, self.metric_series) if s.points]
        text_pen = QPen(palette.text().color())
        if not series or area.width() < 20 or area.height() < 20:
            painter.setPen(text_pen)
            painter.drawText(area, Qt.AlignmentFlag.AlignCenter, "no training data yet")
            painter.end()
            return
        xs = [p[0] for s in series for p in s.points]
        x0, x1 = min(xs), max(xs)
        if x1 - x0 < 1e-9:
            x1 = x0 + 1.0
        for s, left in ((self.loss_series, True), (self.metric_series, False)):
            if not s.points:
                continue
            y0, y1 = s.y_range()
            path = QPainterPath()
            for n, (x, y) in enumerate(s.points):
                pt = QPointF(area.left() + (x - x0) / (x1 - x0) * area.width(),
                             area.bottom() - (y - y0) / (y1 - y0) * area.height())
                path.moveTo(pt) if n == 0 else path.lineTo(pt)
            pen = QPen(s.color, 2)
            painter.setPen(pen)
            painter.drawPath(path)
            if len(s.points) == 1:
                painter.setBrush(s.color)
                painter.drawEllipse(path.currentPosition(), 3, 3)
                painter.setBrush(Qt.BrushStyle.NoBrush)
            # axis labels in the series' colour
            painter.setPen(QPen(s.color))
            top, bottom = f"{y1:.3g}", f"{y0:.3g}"
            if left:
                painter.drawText(QRectF(0, area.top() - 2, margin_l - 4, fm.height()), Qt.AlignmentFlag.AlignRight, top)
                painter.drawText(QRectF(0, area.bottom() - fm.height(), margin_l - 4, fm.height()),
                                 Qt.AlignmentFlag.AlignRight, bottom)
            else:
                painter.drawText(QRectF(area.right() + 4, area.top() - 2, margin_r, fm.height()), 0, top)
                painter.drawText(QRectF(area.right() + 4, area.bottom() - fm.height(), margin_r, fm.height()), 0, bottom)
        # legend and x range
        painter.setPen(text_pen)
        legend_x = area.left()
        for s in (self.loss_series, self.metric_series):
            painter.setPen(QPen(s.color))
            last = f" {s.points[-1][1]:.4g}" if s.points else ""
            text = f"■ {s.label}{last}"
            painter.drawText(QPointF(legend_x, fm.ascent() + 2), text)
            legend_x += fm.horizontalAdvance(text) + 12
        painter.setPen(text_pen)
        painter.drawText(QRectF(area.left(), area.bottom() + 2, area.width(), fm.height()),
                         Qt.AlignmentFlag.AlignLeft, f"{x0:g}")
        painter.drawText(QRectF(area.left(), area.bottom() + 2, area.width(), fm.height()),
                         Qt.AlignmentFlag.AlignRight, f"step {x1:g}")
        painter.end()

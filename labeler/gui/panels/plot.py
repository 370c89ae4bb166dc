"""The training plot, drawn with QPainter (no plotting dependency), in two parts:

- **this run**: the training loss (left axis) and the validation metric (right axis, dots) against
  the training step, which runs on through the refit (the part of the run that also trains on the
  validation images is shaded and labelled, so its own epoch count never looks like a jump);
- **by version**: the validation metric of every model version of the plugin, one dot per version
  (``#id`` under it), the active one ringed, so the user sees whether training helps.

Both parts keep their labels readable at the panel's size: the text is the widget's font, the
axes carry their lowest and highest value, and a part with no data says so in words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFontMetrics, QPainter, QPainterPath, QPen
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
        return _padded([p[1] for p in self.points])


@dataclass(frozen=True)
class VersionScore:
    """One model version in the plot: its id, its validation score (None: not measured), active or not."""

    version: int
    score: float | None
    active: bool = False


def _padded(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if hi - lo < 1e-9:
        pad = abs(hi) * 0.1 or 1.0
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.08
    return lo - pad, hi + pad


LOSS_COLOR = QColor(230, 110, 40)
METRIC_COLOR = QColor(50, 140, 230)
REFIT_SHADE = QColor(50, 140, 230, 28)


class LossPlot(QWidget):
    """This run's loss and validation metric against step, and the validation metric per version."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loss_series = Series("loss", LOSS_COLOR)
        self.metric_series = Series("validation", METRIC_COLOR)
        self.refit_from: float | None = None  # the step where the refit began
        self.versions: list[VersionScore] = []
        self.metric_name = "validation"
        self.setMinimumHeight(170)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:
        return QSize(300, 230)

    def clear(self, metric_label: str = "validation") -> None:
        """Forget this run (the versions stay)."""
        self.loss_series.points.clear()
        self.metric_series.points.clear()
        self.metric_series.label = metric_label
        self.refit_from = None
        self.update()

    def add_loss(self, x: float, y: float) -> None:
        self.loss_series.add(x, y)
        self.update()

    def add_metric(self, x: float, y: float) -> None:
        self.metric_series.add(x, y)
        self.update()

    def mark_refit(self, x: float) -> None:
        """The refit starts at step ``x`` (the first refit report)."""
        if self.refit_from is None and math.isfinite(x):
            self.refit_from = float(x)
            self.update()

    def set_versions(self, versions: Sequence[VersionScore], metric_name: str | None = None) -> None:
        """The model versions of the plugin, oldest first, with their validation scores."""
        self.versions = sorted(versions, key=lambda v: v.version)
        self.metric_name = metric_name or "validation"
        self.update()

    # ---- painting ---------------------------------------------------------------------------

    def paintEvent(self, _event: object) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), self.palette().base())
        fm = painter.fontMetrics()
        gap = fm.height() // 2
        versions_height = max(3 * fm.height() + 30, int(self.height() * 0.4))
        run = QRectF(0, 0, self.width(), self.height() - versions_height - gap)
        history = QRectF(0, run.bottom() + gap, self.width(), versions_height)
        self._paint_run(painter, fm, run)
        self._paint_versions(painter, fm, history)
        painter.end()

    def _frame(self, painter: QPainter, fm: QFontMetrics, box: QRectF, title: str, *, right_axis: bool) -> QRectF:
        """Draw the title of a part and its frame; return the plotting area inside."""
        text = self.palette().text().color()
        painter.setPen(QPen(text))
        painter.drawText(
            QRectF(box.left() + 4, box.top(), box.width() - 8, fm.height()),
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            title,
        )
        margin = fm.horizontalAdvance("0.0000") + 10
        area = QRectF(
            box.left() + margin,
            box.top() + fm.height() + 4,
            box.width() - margin - (margin if right_axis else 8),
            box.height() - 2 * fm.height() - 10,
        )
        painter.setPen(QPen(self.palette().mid().color()))
        painter.drawRect(area)
        return area

    def _say(self, painter: QPainter, area: QRectF, text: str) -> None:
        painter.setPen(QPen(self.palette().placeholderText().color()))
        painter.drawText(area, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, text)

    def _paint_run(self, painter: QPainter, fm: QFontMetrics, box: QRectF) -> None:
        legend = "  ".join(
            f"{s.label} {s.points[-1][1]:.4g}" if s.points else s.label for s in (self.loss_series, self.metric_series)
        )
        area = self._frame(painter, fm, box, f"This run: {legend}", right_axis=True)
        series = [s for s in (self.loss_series, self.metric_series) if s.points]
        if not series or area.width() < 20 or area.height() < 16:
            self._say(painter, area, "the loss shows here while a model trains")
            return
        xs = [p[0] for s in series for p in s.points]
        x0, x1 = min(xs), max(xs)
        if x1 - x0 < 1e-9:
            x1 = x0 + 1.0

        def sx(x: float) -> float:
            return area.left() + (x - x0) / (x1 - x0) * area.width()

        if self.refit_from is not None and self.refit_from <= x1:
            left = max(area.left(), sx(self.refit_from))
            shade = QRectF(left, area.top(), area.right() - left, area.height())
            painter.fillRect(shade, REFIT_SHADE)
            painter.setPen(QPen(METRIC_COLOR))
            if shade.width() >= fm.horizontalAdvance("refit") + 6:
                label, align = shade.adjusted(3, 1, -2, 0), Qt.AlignmentFlag.AlignLeft
            else:  # a narrow shade: the word ends at the right edge, over the plot
                label = QRectF(area.left(), area.top() + 1, area.width() - 3, fm.height())
                align = Qt.AlignmentFlag.AlignRight
            painter.drawText(label, Qt.AlignmentFlag.AlignTop | align, "refit")
        for s, left_axis in ((self.loss_series, True), (self.metric_series, False)):
            if not s.points:
                continue
            y0, y1 = s.y_range()

            def sy(y: float, lo: float = y0, hi: float = y1) -> float:
                return area.bottom() - (y - lo) / (hi - lo) * area.height()

            path = QPainterPath()
            for n, (x, y) in enumerate(s.points):
                pt = QPointF(sx(x), sy(y))
                path.moveTo(pt) if n == 0 else path.lineTo(pt)
            painter.setPen(QPen(s.color, 2))
            painter.drawPath(path)
            if s is self.metric_series or len(s.points) == 1:  # validation points are few: mark each
                painter.setBrush(s.color)
                for x, y in s.points:
                    painter.drawEllipse(QPointF(sx(x), sy(y)), 3.5, 3.5)
                painter.setBrush(Qt.BrushStyle.NoBrush)
            self._y_labels(painter, fm, area, s.color, y0, y1, left=left_axis)
        painter.setPen(QPen(self.palette().text().color()))
        below = QRectF(area.left(), area.bottom() + 2, area.width(), fm.height())
        painter.drawText(below, Qt.AlignmentFlag.AlignLeft, f"step {x0:g}")
        painter.drawText(below, Qt.AlignmentFlag.AlignRight, f"{x1:g}")

    def _y_labels(
        self, painter: QPainter, fm: QFontMetrics, area: QRectF, color: QColor, y0: float, y1: float, *, left: bool
    ) -> None:
        painter.setPen(QPen(color))
        width = fm.horizontalAdvance("0.0000") + 4
        x = area.left() - width - 4 if left else area.right() + 4
        align = Qt.AlignmentFlag.AlignRight if left else Qt.AlignmentFlag.AlignLeft
        painter.drawText(QRectF(x, area.top(), width, fm.height()), align, f"{y1:.3g}")
        painter.drawText(QRectF(x, area.bottom() - fm.height(), width, fm.height()), align, f"{y0:.3g}")

    def _paint_versions(self, painter: QPainter, fm: QFontMetrics, box: QRectF) -> None:
        scored = [v for v in self.versions if v.score is not None and math.isfinite(v.score)]
        area = self._frame(
            painter, fm, box, f"By version: {self.metric_name} on the validation images", right_axis=False
        )
        if not scored or area.width() < 20 or area.height() < 10:
            self._say(painter, area, "no trained version yet" if not self.versions else "no version measured yet")
            return
        y0, y1 = _padded([v.score for v in scored if v.score is not None])
        step = area.width() / max(1, len(scored))
        label_every = max(1, math.ceil(len(scored) * fm.horizontalAdvance("#000") / max(1.0, area.width())))
        path = QPainterPath()
        points: list[tuple[QPointF, VersionScore]] = []
        for n, v in enumerate(scored):
            assert v.score is not None
            pt = QPointF(area.left() + step * (n + 0.5), area.bottom() - (v.score - y0) / (y1 - y0) * area.height())
            path.moveTo(pt) if n == 0 else path.lineTo(pt)
            points.append((pt, v))
        painter.setPen(QPen(METRIC_COLOR, 1.5, Qt.PenStyle.DashLine))
        painter.drawPath(path)
        for n, (pt, v) in enumerate(points):
            painter.setPen(QPen(METRIC_COLOR))
            painter.setBrush(METRIC_COLOR)
            painter.drawEllipse(pt, 3.5, 3.5)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            if v.active:
                painter.setPen(QPen(self.palette().text().color(), 2))
                painter.drawEllipse(pt, 7, 7)
            if n % label_every == 0 or v.active or n == len(points) - 1:
                painter.setPen(QPen(self.palette().text().color()))
                painter.drawText(
                    QRectF(pt.x() - step / 2 - 20, area.bottom() + 2, step + 40, fm.height()),
                    Qt.AlignmentFlag.AlignHCenter,
                    f"#{v.version}{' ●' if v.active else ''}",
                )
        self._y_labels(painter, fm, area, METRIC_COLOR, y0, y1, left=True)

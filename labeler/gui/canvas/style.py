"""How annotations look: class colours, pens and fills, kept in one place.

Every outline is drawn with a cosmetic pen (its width is in screen pixels, whatever the zoom), so
lines stay thin on an 8000-pixel image zoomed out and do not turn into bars zoomed in. Human
labels have solid outlines; proposals have dashed outlines and a fainter fill, and show their
score beside the class name.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QPen

from labeler.core.annotation import Category

#: Colour of annotations whose category is missing from the project.
UNKNOWN_COLOR = (200, 200, 200)
LINE_WIDTH = 2.0
SELECTED_LINE_WIDTH = 3.0
FILL_ALPHA = 40  # box / polygon interior
PROPOSAL_FILL_ALPHA = 20
MASK_ALPHA = 110  # mask pixels
PROPOSAL_MASK_ALPHA = 70
#: Size of resize handles and polygon vertices, in screen pixels.
HANDLE_SIZE = 9.0


def category_color(category: Category | None) -> QColor:
    """The class colour (opaque), grey for an unknown class."""
    r, g, b = category.color if category is not None else UNKNOWN_COLOR
    return QColor(r, g, b)


def outline_pen(color: QColor, *, proposal: bool, selected: bool) -> QPen:
    """Cosmetic outline pen: solid for labels, dashed for proposals, wider when selected."""
    pen = QPen(color, SELECTED_LINE_WIDTH if selected else LINE_WIDTH)
    pen.setCosmetic(True)
    pen.setJoinStyle(Qt.PenJoinStyle.MiterJoin)
    if proposal:
        pen.setStyle(Qt.PenStyle.CustomDashLine)
        pen.setDashPattern([4.0, 3.0])
    return pen


def halo_pen(*, selected: bool) -> QPen:
    """A dark cosmetic line under the outline so it reads on bright and dark images alike."""
    pen = QPen(QColor(0, 0, 0, 150), (SELECTED_LINE_WIDTH if selected else LINE_WIDTH) + 2.0)
    pen.setCosmetic(True)
    pen.setJoinStyle(Qt.PenJoinStyle.MiterJoin)
    return pen


def fill_brush(color: QColor, *, proposal: bool, selected: bool) -> QBrush:
    fill = QColor(color)
    alpha = PROPOSAL_FILL_ALPHA if proposal else FILL_ALPHA
    fill.setAlpha(min(255, alpha * 2) if selected else alpha)
    return QBrush(fill)


def text_color_on(background: QColor) -> QColor:
    """Black or white, whichever reads better on ``background`` (by its luminance)."""
    luminance = 0.299 * background.red() + 0.587 * background.green() + 0.114 * background.blue()
    return QColor(0, 0, 0) if luminance > 150 else QColor(255, 255, 255)


def label_text(name: str, score: float | None, *, proposal: bool) -> str:
    """The tag shown beside a label: the class name, and for a proposal its score."""
    if proposal and score is not None:
        return f"{name} {score:.2f}"
    return name

"""Icons from ``resources/icons`` as ``QIcon``s, drawn in the palette's text colour.

The tool icons are line drawings in ``currentColor``; Qt's SVG renderer does not know the widget's
colour, so the SVG text gets the palette's button-text colour before it is rendered (sharp at 1x
and 2x). The app icon keeps its own colours.
"""

from __future__ import annotations

from functools import cache

from PySide6.QtCore import QByteArray, QRectF, Qt
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QImage, QPainter, QPalette, QPixmap
from PySide6.QtSvg import QSvgRenderer

from labeler.core.resources import APP_ICON, ResourceError, icon_svg

#: Sizes rendered into every icon, in device pixels (tool bar 24 px, 1x and 2x; menus 16 px).
SIZES = (16, 24, 32, 48)


def _render(svg: bytes, side: int) -> QPixmap:
    renderer = QSvgRenderer(QByteArray(svg))
    if not renderer.isValid():
        raise ResourceError("an icon of the app is not valid SVG")
    image = QImage(side, side, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    renderer.render(painter, QRectF(0, 0, side, side))
    painter.end()
    return QPixmap.fromImage(image)


def _text_color() -> QColor:
    app = QGuiApplication.instance()
    palette = QGuiApplication.palette() if app is not None else QPalette()
    return palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.ButtonText)


@cache
def _icon(name: str, color: str) -> QIcon:
    svg = icon_svg(name).replace(b"currentColor", color.encode("ascii"))
    icon = QIcon()
    for side in SIZES:
        icon.addPixmap(_render(svg, side))
    return icon


def icon(name: str) -> QIcon:
    """The icon ``name`` of ``resources/icons`` (without ``.svg``), in the palette's text colour."""
    return _icon(name, _text_color().name())


def app_icon() -> QIcon:
    """The app's own icon (window, task bar, desktop entry)."""
    return _icon(APP_ICON, "#000000")

"""The side panels give way before the canvas does.

``QMainWindow`` keeps its docks' widths when the window narrows and takes the whole loss from the
central widget, so at 800 px the canvas is the smallest thing in the window. :class:`PanelSqueeze`
turns that round: the canvas keeps at least :data:`CANVAS_SHARE` of the width the canvas and the
side columns share; the columns (left, right) give way for it, in proportion to what each can
spare above its minimum width, and get back the widths they had (the user's) when the window
grows again. Below the columns' minimums the canvas shrinks too, down to its own minimum, which
with theirs is the window's minimum size: nothing overlaps.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QDockWidget, QMainWindow, QWidget

CANVAS_SHARE = 0.5
"""The part of the shared width the canvas keeps while the side columns can still give way."""

LIST_WIDTH = 260
"""The image list's width in a new layout, and what a restored one narrower than
:data:`READABLE_LIST_WIDTH` gets back (at that width every long name read the same)."""
READABLE_LIST_WIDTH = 200
PANEL_WIDTH = 330
"""The right-hand column's width in a new layout, and what a restored one narrower than
:data:`READABLE_PANEL_WIDTH` gets back (below it the class buttons, the proposal filter and the
model tabs scroll sideways)."""
READABLE_PANEL_WIDTH = 280

_AREAS = (Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea)


def squeezed_widths(
    *, total: int, wanted: tuple[int, ...], minimum: tuple[int, ...], canvas_min: int, share: float = CANVAS_SHARE
) -> tuple[int, ...]:
    """The widths the side columns get when they and the canvas share ``total`` pixels.

    ``wanted``: the columns' widths as the user left them; ``minimum``: the least each can take.
    The canvas keeps ``max(canvas_min, share * total)`` where the columns can spare it; each column
    gives in proportion to its slack above its minimum."""
    canvas_needs = max(float(canvas_min), share * total)
    excess = canvas_needs - (total - sum(wanted))
    if excess <= 0:
        return tuple(wanted)
    slack = [max(0, w - m) for w, m in zip(wanted, minimum, strict=True)]
    room = sum(slack)
    if room <= 0:
        return tuple(max(w, m) for w, m in zip(wanted, minimum, strict=True))
    give = min(1.0, excess / room)
    return tuple(round(w - s * give) for w, s in zip(wanted, slack, strict=True))


class PanelSqueeze:
    """Keeps the canvas usable in a narrow window: call :meth:`schedule` from the window's
    ``resizeEvent``; :meth:`apply` runs once the window's layout has taken the new size."""

    def __init__(self, window: QMainWindow, canvas: QWidget) -> None:
        self.window = window
        self.canvas = canvas
        self._wanted: dict[Qt.DockWidgetArea, int] = {}
        self._squeezed = False
        self._applying = False
        self._timer = QTimer(window)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self.apply)

    def schedule(self) -> None:
        self._timer.start()

    def _columns(self) -> dict[Qt.DockWidgetArea, list[QDockWidget]]:
        columns: dict[Qt.DockWidgetArea, list[QDockWidget]] = {}
        for dock in self.window.findChildren(QDockWidget):
            area = self.window.dockWidgetArea(dock)
            if area in _AREAS and dock.isVisible() and not dock.isFloating():
                columns.setdefault(area, []).append(dock)
        return columns

    def forget(self) -> None:
        """The user's widths changed (a restored layout): take the present ones as wanted."""
        self._wanted = {}
        self._squeezed = False

    def widen_unreadable(
        self, dock: QDockWidget | None, *, below: int = READABLE_LIST_WIDTH, width: int = LIST_WIDTH
    ) -> None:
        """Give ``dock`` (the image list, a panel of the right-hand column) ``width`` if it is docked
        and narrower than ``below``."""
        if dock is not None and dock.isVisible() and not dock.isFloating() and dock.width() < below:
            self.window.resizeDocks([dock], [width], Qt.Orientation.Horizontal)
            self.forget()

    def apply(self) -> None:
        if self._applying:
            return
        columns = self._columns()
        if not columns:
            return
        areas = list(columns)
        width = {a: max(d.width() for d in columns[a]) for a in areas}
        forced = self.canvas.width() <= self.canvas.minimumWidth()  # Qt took it from the columns already
        if any(a not in self._wanted for a in areas) or not (self._squeezed or forced):
            self._wanted = {a: width[a] for a in areas}  # what the user chose, before we squeeze
        minimum = tuple(max(d.minimumSizeHint().width(), d.minimumWidth()) for a in areas for d in columns[a][:1])
        total = self.canvas.width() + sum(width.values())
        target = squeezed_widths(
            total=total,
            wanted=tuple(self._wanted[a] for a in areas),
            minimum=minimum,
            canvas_min=self.canvas.minimumWidth(),
        )
        self._squeezed = target != tuple(self._wanted[a] for a in areas)
        if all(abs(t - width[a]) <= 1 for t, a in zip(target, areas, strict=True)):
            return
        self._applying = True
        try:
            self.window.resizeDocks([columns[a][0] for a in areas], list(target), Qt.Orientation.Horizontal)
        finally:
            self._applying = False

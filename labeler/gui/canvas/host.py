"""What a canvas tool may use of the canvas: the :class:`ToolHost` protocol.

The tools (:mod:`.tools`, :mod:`.assist_tools`) get mouse and key events from the canvas and hand
finished edits back to it. This protocol names every canvas member they may reach, so that the
canvas can change behind it and a tool can be tested against any object that provides it, as
:class:`~labeler.gui.canvas.view.MouseHandler` does the other way (view to canvas).
:class:`~labeler.gui.canvas.canvas.AnnotationCanvas` is the one host in the app.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QGraphicsScene

if TYPE_CHECKING:
    import numpy as np

    from labeler.assist.window import PixelSource
    from labeler.core.annotation import Annotation, Category
    from labeler.core.store import Project
    from labeler.gui.canvas.items import AnnotationItem
    from labeler.gui.controllers.undo import Pair


class ToolView(Protocol):
    """The part of the view a tool uses: the zoom, and its cursor."""

    def scale_factor(self) -> float:
        """Screen pixels per image pixel."""
        ...

    def set_tool_cursor(self, cursor: Qt.CursorShape) -> None: ...


class ToolHost(Protocol):
    """Everything a tool may use of the canvas (coordinates are image pixels, top-left origin)."""

    # ---- what is shown
    def project(self) -> Project | None: ...
    def current_image_id(self) -> int | None: ...
    def image_size(self) -> tuple[int, int]:
        """``(width, height)`` of the shown image; ``(0, 0)`` before it is decoded."""
        ...

    def image_pixels(self) -> PixelSource | None: ...
    def scene(self) -> QGraphicsScene:
        """Where a tool adds its temporary feedback items (and removes them)."""
        ...

    def view(self) -> ToolView: ...

    # ---- settings
    def category_id(self) -> int | None:
        """The class of new labels."""
        ...

    def category(self, category_id: int) -> Category | None: ...
    def brush_size(self) -> int:
        """Brush and eraser diameter in image pixels."""
        ...

    # ---- labels on the image
    def tolerance(self) -> float:
        """Hit tolerance in image pixels at the current zoom."""
        ...

    def item_at(self, pos: QPointF) -> AnnotationItem | None: ...
    def visible_items(self) -> list[AnnotationItem]: ...
    def annotation_items(self) -> Mapping[int, AnnotationItem]: ...
    def selected_ids(self) -> list[int]: ...
    def select(self, ids: list[int]) -> None: ...

    # ---- edits (each one undo step; the canvas writes them to the store)
    def add(self, anns: list[Annotation], *, text: str | None = None, seconds: float | None = None) -> list[int]: ...
    def edit(self, pairs: list[tuple[Annotation, Annotation]], text: str) -> bool: ...
    def change(self, pairs: list[Pair], text: str, *, seconds: float | None = None) -> bool: ...
    def remember_mask(self, rle: dict[str, object], mask: np.ndarray) -> None: ...

    # ---- talking to the user
    def report(self, message: str) -> None:
        """Say ``message`` to the user (the status bar): why an edit did not happen."""
        ...

    def ask_for_class(self) -> None:
        """A label was started with no class: the window asks the user for one."""
        ...

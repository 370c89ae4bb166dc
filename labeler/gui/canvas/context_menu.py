"""The canvas's right-click menu: change class, delete, accept, reject the label under the pointer
(or the selection it belongs to)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QPoint, QPointF
from PySide6.QtWidgets import QMenu

if TYPE_CHECKING:
    from labeler.gui.canvas.canvas import AnnotationCanvas


def label_menu(canvas: AnnotationCanvas, pos: QPointF) -> QMenu | None:
    """The menu for the label under ``pos`` (selected first, unless it is already in the
    selection); ``None`` when no label is there."""
    item = canvas.item_at(pos)
    if item is None or item.ann.id is None:
        return None
    if item.ann.id not in canvas.selected_ids():
        canvas.select([item.ann.id])
    ids = canvas.selected_ids()
    menu = QMenu(canvas)
    classes = menu.addMenu("Change class")
    for category in canvas.categories():
        action = classes.addAction(category.name)
        action.triggered.connect(lambda _=False, cid=category.id: canvas.change_class_selected(cid))
    proposals = [i for i in ids if canvas.annotation_items()[i].ann.is_proposal]
    if proposals:
        menu.addAction("Accept proposal (Y)", lambda: canvas.accept(proposals))
        menu.addAction("Reject proposal (X)", lambda: canvas.reject(proposals))
    menu.addSeparator()
    menu.addAction("Delete (Del)", canvas.delete_selected)
    return menu


def open_label_menu(canvas: AnnotationCanvas, pos: QPointF, global_pos: QPoint) -> QMenu | None:
    """Show :func:`label_menu` at ``global_pos`` (not blocking); returns it (for tests)."""
    menu = label_menu(canvas, pos)
    if menu is not None:
        menu.popup(global_pos)
    return menu

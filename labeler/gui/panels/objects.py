"""The object list: every label on the current image (class, kind, source, score), in step with the
canvas: select a row to select the label (and bring it into view, zooming to a tiny one), tick
"Shown" off to hide it, double-click to change its class, Delete to delete the selected ones."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QPushButton,
    QTableWidgetItem,
    QWidget,
)

from labeler.gui.panels.table_panel import lay_out, row_table

if TYPE_CHECKING:
    from labeler.gui.canvas import AnnotationCanvas

COLUMNS = ("Shown", "Class", "Kind", "Source", "Score")


class ObjectsPanel(QWidget):
    """The labels of the image on the canvas; call :meth:`refresh` after they change."""

    def __init__(self, canvas: AnnotationCanvas, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._canvas = canvas
        self._syncing = False
        self.table = row_table(COLUMNS, QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setToolTip(
            "Select a row to find the label on the image; untick to hide it; double-click to change its class"
        )
        self.delete_button = QPushButton("Delete selected")
        self.delete_button.setToolTip("Delete the selected labels (Delete)")
        lay_out(self, self.table, self.delete_button)
        self.table.itemSelectionChanged.connect(self._on_rows_selected)
        self.table.itemChanged.connect(self._on_item_changed)
        self.table.cellDoubleClicked.connect(self._on_double_click)
        self.delete_button.clicked.connect(canvas.delete_selected)
        canvas.selectionChanged.connect(self._on_canvas_selection)

    def ids(self) -> list[int]:
        """The annotation ids, in row order."""
        return [
            int(item.data(Qt.ItemDataRole.UserRole))
            for r in range(self.table.rowCount())
            if (item := self.table.item(r, 0)) is not None
        ]

    def refresh(self) -> None:
        items = sorted(self._canvas.annotation_items().items())
        self._syncing = True
        try:
            self.table.setRowCount(len(items))
            for row, (ann_id, item) in enumerate(items):
                ann = item.ann
                name = item.category.name if item.category is not None else f"class {ann.category_id}"
                source = (
                    ("proposal by " if ann.is_proposal else "accepted from ") + self._canvas.plugin_of(ann)
                    if ann.model_version is not None
                    else "you"
                )
                cells = ["", name, ann.kind.value, source, "" if ann.score is None else f"{ann.score:.2f}"]
                for col, text in enumerate(cells):
                    cell = QTableWidgetItem(text)
                    cell.setData(Qt.ItemDataRole.UserRole, ann_id)
                    if col == 0:
                        cell.setFlags(cell.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                        hidden = self._canvas.is_hidden(ann_id)
                        cell.setCheckState(Qt.CheckState.Unchecked if hidden else Qt.CheckState.Checked)
                    self.table.setItem(row, col, cell)
            self._select_rows(self._canvas.selected_ids())
        finally:
            self._syncing = False
        self.delete_button.setEnabled(bool(self._canvas.selected_ids()))

    def _select_rows(self, ids: list[int]) -> None:
        wanted = set(ids)
        self.table.clearSelection()
        mode = self.table.selectionMode()
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.MultiSelection)
        for row, ann_id in enumerate(self.ids()):
            if ann_id in wanted:
                self.table.selectRow(row)
        self.table.setSelectionMode(mode)

    def _on_rows_selected(self) -> None:
        if self._syncing:
            return
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        ids = [self.ids()[r] for r in rows]
        self._syncing = True
        try:
            for ann_id in ids:
                if self._canvas.is_hidden(ann_id):
                    self._canvas.set_hidden(ann_id, False)
                    if (item := self.table.item(rows[ids.index(ann_id)], 0)) is not None:
                        item.setCheckState(Qt.CheckState.Checked)
            self._canvas.select(ids)
            if len(ids) == 1:
                self._canvas.centre_on(ids[0])
        finally:
            self._syncing = False
        self.delete_button.setEnabled(bool(ids))

    def _on_double_click(self, row: int, _column: int) -> None:
        """Double click: choose another class for that label (as labelme's edit-label dialog)."""
        from PySide6.QtWidgets import QInputDialog

        categories = self._canvas.categories()
        ann_id = self.ids()[row]
        item = self._canvas.annotation_items().get(ann_id)
        if item is None or not categories:
            return
        names = [c.name for c in categories]
        current = names.index(item.category.name) if item.category is not None and item.category.name in names else 0
        name, ok = QInputDialog.getItem(self, "Change class", "Class of this label:", names, current, False)
        if ok:
            self._canvas.select([ann_id])
            self._canvas.change_class_selected(categories[names.index(name)].id)

    def _on_item_changed(self, cell: QTableWidgetItem) -> None:
        if self._syncing or cell.column() != 0:
            return
        self._canvas.set_hidden(int(cell.data(Qt.ItemDataRole.UserRole)), cell.checkState() != Qt.CheckState.Checked)

    def _on_canvas_selection(self, ids: list[int]) -> None:
        if self._syncing:
            return
        self._syncing = True
        try:
            self._select_rows(ids)
        finally:
            self._syncing = False
        self.delete_button.setEnabled(bool(ids))

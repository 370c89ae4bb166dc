"""The class list: categories with their colours; add, rename, recolour, delete; pick the class to draw."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QColorDialog,
    QHBoxLayout,
    QInputDialog,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from labeler.core.annotation import Category
from labeler.core.store import Project, ProjectError


def color_icon(color: tuple[int, int, int], size: int = 14) -> QIcon:
    pixmap = QPixmap(size, size)
    pixmap.fill(QColor(*color))
    return QIcon(pixmap)


class ClassListPanel(QWidget):
    """Categories of the project. ``categoryChosen(id)`` when the user picks one (click or 1-9);
    ``categoriesChanged()`` after an add, rename or recolour (the canvas redraws its colours)."""

    categoryChosen = Signal(int)
    categoriesChanged = Signal()
    categoryDeleted = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._project: Project | None = None
        self.list = QListWidget()
        self.list.setToolTip("Class for new labels (keys 1-9). Double-click to rename; right-click to delete.")
        self.add_button = QPushButton("Add…")
        self.rename_button = QPushButton("Rename…")
        self.color_button = QPushButton("Colour…")
        self.delete_action = QAction("Delete class…", self.list)  # a fourth button would widen the column
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.list, 1)
        row = QHBoxLayout()
        for b in (self.add_button, self.rename_button, self.color_button):
            row.addWidget(b)
        layout.addLayout(row)
        self.add_button.clicked.connect(lambda: self.ask_add())
        self.rename_button.clicked.connect(lambda: self.ask_rename())
        self.color_button.clicked.connect(lambda: self.ask_recolor())
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        self.list.addAction(self.delete_action)
        self.delete_action.triggered.connect(lambda: self.ask_delete())
        self.list.currentItemChanged.connect(self._on_current)
        self.list.itemDoubleClicked.connect(lambda _item: self.ask_rename())
        self._update_buttons()

    def set_project(self, project: Project | None) -> None:
        self._project = project
        self.reload()

    def reload(self) -> None:
        current = self.current_category_id()
        self.list.blockSignals(True)
        self.list.clear()
        categories = self._project.categories() if self._project is not None else []
        for n, cat in enumerate(categories):
            key = f"{n + 1}  " if n < 9 else "    "
            item = QListWidgetItem(color_icon(cat.color), f"{key}{cat.name}")
            item.setData(Qt.ItemDataRole.UserRole, cat.id)
            self.list.addItem(item)
        self.list.blockSignals(False)
        if categories:
            ids = [c.id for c in categories]
            self.choose(current if current in ids else ids[0])
        self._update_buttons()

    def categories(self) -> list[Category]:
        return self._project.categories() if self._project is not None else []

    def current_category_id(self) -> int | None:
        item = self.list.currentItem()
        return int(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None

    def choose(self, category_id: int) -> None:
        for row in range(self.list.count()):
            if self.list.item(row).data(Qt.ItemDataRole.UserRole) == category_id:
                if self.list.currentRow() == row:
                    self.categoryChosen.emit(category_id)
                else:
                    self.list.setCurrentRow(row)
                return

    def choose_number(self, number: int) -> bool:
        """Pick the ``number``-th class (1-based, as the keys 1-9); False if there is none."""
        if not 1 <= number <= self.list.count():
            return False
        self.choose(int(self.list.item(number - 1).data(Qt.ItemDataRole.UserRole)))
        return True

    # ---- edits ----------------------------------------------------------------------------

    def add_category(self, name: str) -> Category | None:
        if self._project is None:
            return None
        try:
            category = self._project.add_category(name)
        except ProjectError as exc:
            QMessageBox.warning(self, "Add class", str(exc))
            return None
        self.reload()
        self.choose(category.id)
        self.categoriesChanged.emit()
        return category

    def rename_category(self, category_id: int, name: str) -> bool:
        if self._project is None:
            return False
        try:
            self._project.rename_category(category_id, name)
        except ProjectError as exc:
            QMessageBox.warning(self, "Rename class", str(exc))
            return False
        self.reload()
        self.categoriesChanged.emit()
        return True

    def recolor_category(self, category_id: int, color: tuple[int, int, int]) -> None:
        if self._project is None:
            return
        try:
            self._project.recolor_category(category_id, color)
        except ProjectError as exc:
            QMessageBox.warning(self, "Class colour", str(exc))
            return
        self.reload()
        self.categoriesChanged.emit()

    def delete_category(self, category_id: int) -> bool:
        """Delete the class and its labels; a refusal (e.g. an annotator's on a team's project)
        is said in a message box and nothing changes."""
        if self._project is None:
            return False
        try:
            self._project.delete_category(category_id)
        except ProjectError as exc:
            QMessageBox.warning(self, "Delete class", str(exc))
            return False
        self.reload()
        self.categoryDeleted.emit(category_id)
        self.categoriesChanged.emit()
        return True

    def ask_delete(self) -> None:
        category_id = self.current_category_id()
        if category_id is None or self._project is None:
            return
        name = self._project.category(category_id).name
        answer = QMessageBox.question(
            self, "Delete class", f"Delete the class {name!r} and every label of it? This cannot be undone."
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.delete_category(category_id)

    def ask_add(self) -> None:
        name, ok = QInputDialog.getText(self, "Add class", "Name of the new class:")
        if ok and name.strip():
            self.add_category(name)

    def ask_rename(self) -> None:
        category_id = self.current_category_id()
        if category_id is None or self._project is None:
            return
        old = self._project.category(category_id).name
        name, ok = QInputDialog.getText(self, "Rename class", f"New name for {old!r}:", text=old)
        if ok and name.strip() and name.strip() != old:
            self.rename_category(category_id, name)

    def ask_recolor(self) -> None:
        category_id = self.current_category_id()
        if category_id is None or self._project is None:
            return
        old = self._project.category(category_id).color
        color = QColorDialog.getColor(QColor(*old), self, "Class colour")
        if color.isValid():
            self.recolor_category(category_id, (color.red(), color.green(), color.blue()))

    def _on_current(self, current: QListWidgetItem | None, _previous: QListWidgetItem | None) -> None:
        self._update_buttons()
        if current is not None:
            self.categoryChosen.emit(int(current.data(Qt.ItemDataRole.UserRole)))

    def _update_buttons(self) -> None:
        has_project = self._project is not None
        has_current = self.list.currentItem() is not None
        self.add_button.setEnabled(has_project)
        self.rename_button.setEnabled(has_current)
        self.color_button.setEnabled(has_current)
        self.delete_action.setEnabled(has_current)

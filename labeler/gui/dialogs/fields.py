"""Form fields the dialogs share."""

from __future__ import annotations

from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLineEdit, QPushButton, QWidget


class FolderField(QWidget):
    """A folder's path, typed or chosen with Browse… (which opens at the typed folder, else at
    ``start_in``): ``edit`` holds the text, ``text()`` the path without surrounding spaces."""

    def __init__(
        self, title: str, placeholder: str = "", *, text: str = "", start_in: str = "", parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._title = title
        self._start = start_in
        self.edit = QLineEdit(text)
        self.edit.setPlaceholderText(placeholder)
        self.browse = QPushButton("Browse…")
        self.browse.clicked.connect(self.choose)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit, 1)
        row.addWidget(self.browse)

    def text(self) -> str:
        return self.edit.text().strip()

    def choose(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, self._title, self.edit.text() or self._start)
        if folder:
            self.edit.setText(folder)

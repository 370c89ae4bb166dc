"""File ▸ Open shared project: a project in a PostgreSQL database, and where its images are on
this machine (the folder the project's image paths are relative to)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit, QWidget

from labeler.core.pg import is_database_url
from labeler.gui.dialogs.fields import FolderField

CREDENTIALS_NOTE = (
    "Credentials come as for every PostgreSQL client: ~/.pgpass, PGPASSFILE, a service file "
    "(postgresql://?service=NAME) or the environment. A password typed into the URL is used for "
    "this session only and is never saved."
)


class SharedProjectDialog(QDialog):
    """Asks for a ``postgresql://`` URL and an existing image folder; OK only when both are valid."""

    def __init__(self, parent: QWidget | None = None, url: str = "", image_root: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Open shared project")
        self.url = QLineEdit(url)
        self.url.setPlaceholderText("postgresql://host/database")
        self.folder = FolderField(
            "Image folder", "the folder the project's image paths start from, on this machine", text=image_root
        )
        note = QLabel(CREDENTIALS_NOTE)
        note.setWordWrap(True)
        self.problem = QLabel()
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow("Database URL", self.url)
        form.addRow("Image folder", self.folder)
        form.addRow(note)
        form.addRow(self.problem)
        form.addRow(self.buttons)
        self.url.textChanged.connect(self._check)
        self.folder.edit.textChanged.connect(self._check)
        self.setMinimumWidth(560)
        self._check()

    def chosen(self) -> tuple[str, str]:
        return self.url.text().strip(), str(Path(self.folder.text()).expanduser())

    def _check(self) -> None:
        url, folder = self.chosen()
        problem = ""
        if not is_database_url(url):
            problem = "The URL starts with postgresql://"
        elif not self.folder.text() or not Path(folder).is_dir():
            problem = "Choose the image folder (it must exist on this machine)"
        self.problem.setText(problem)
        button = self.buttons.button(QDialogButtonBox.StandardButton.Open)
        button.setEnabled(not problem)


def ask_shared_project(parent: QWidget | None, url: str, image_root: str = "") -> tuple[str, str] | None:
    """The URL and image folder the user chose, or ``None`` when cancelled."""
    dialog = SharedProjectDialog(parent, url, image_root)
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return None
    return dialog.chosen()

"""Auto-label controls: this image, or every image not done (background, with progress and cancel)."""

from __future__ import annotations

from PySide6.QtWidgets import QGridLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from labeler.learning.events import format_eta


class AutoLabelPanel(QWidget):
    """Buttons and progress; the main window connects them to :class:`AutoLabelController`."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.image_button = QPushButton("Auto-label this image")
        self.image_button.setToolTip("Run the active model on the current image (Ctrl+L)")
        self.all_button = QPushButton("Auto-label all not done")
        self.all_button.setToolTip("Run the active model on every image not marked done, in the background")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m")
        self.progress.setVisible(False)  # shown from the first run on
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        grid = QGridLayout()
        grid.addWidget(self.image_button, 0, 0, 1, 2)
        grid.addWidget(self.all_button, 1, 0)
        grid.addWidget(self.cancel_button, 1, 1)
        layout.addLayout(grid)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)

    def reset(self) -> None:
        """Forget the previous project's run: message and progress."""
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setVisible(False)
        self.status.setText("")

    def set_image_running(self, running: bool) -> None:
        """A one-image run is going (the button says so and waits)."""
        self.image_button.setText("Auto-labelling this image…" if running else "Auto-label this image")
        self.image_button.setEnabled(not running)

    def set_running(self, running: bool) -> None:
        self.all_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if running:
            self.progress.setVisible(True)
            self.progress.setRange(0, 0)  # busy until the first report
            self.status.setText("Starting…")

    def show_progress(self, done: int, total: int, eta: float) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        self.status.setText(f"{done} of {total} images · {format_eta(eta)}")

    def show_finished(self, message: str, tail: str, ok: bool) -> None:
        self.set_running(False)
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)
        self.status.setText(message if ok or not tail else f"{message}\n{tail.splitlines()[-1]}")

"""Proposal review: score threshold, accept / reject selected, accept all shown, reject all shown.

Every action delegates to the canvas, which pushes undoable commands (so Ctrl+Z brings a
rejected proposal back).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QGridLayout, QLabel, QPushButton, QSlider, QVBoxLayout, QWidget

from labeler.core.annotation import State
from labeler.core.store import Project

if TYPE_CHECKING:
    from labeler.gui.canvas import AnnotationCanvas


class ProposalsPanel(QWidget):
    """Controls for the proposals on the current image. ``thresholdChanged(float)`` in [0, 1]."""

    thresholdChanged = Signal(float)

    def __init__(self, canvas: AnnotationCanvas, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._canvas = canvas
        self._project: Project | None = None
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 100)
        self.slider.setValue(50)
        self.slider.setToolTip("Hide proposals scoring below this")
        self.threshold_label = QLabel()
        self.summary = QLabel("No image")
        self.summary.setWordWrap(True)
        self.accept_button = QPushButton("Accept selected")
        self.reject_button = QPushButton("Reject selected")
        self.accept_all_button = QPushButton("Accept all shown")
        self.reject_all_button = QPushButton("Reject all shown")
        self.accept_button.setToolTip("Accept the selected proposals (Y)")
        self.reject_button.setToolTip("Reject the selected proposals (X)")
        self.accept_all_button.setToolTip("Accept every proposal above the threshold (Shift+Y)")
        self.reject_all_button.setToolTip("Reject every proposal above the threshold (Shift+X)")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        row = QGridLayout()
        row.addWidget(QLabel("Min. score"), 0, 0)
        row.addWidget(self.slider, 0, 1)
        row.addWidget(self.threshold_label, 0, 2)
        layout.addLayout(row)
        layout.addWidget(self.summary)
        grid = QGridLayout()
        grid.addWidget(self.accept_button, 0, 0)
        grid.addWidget(self.reject_button, 0, 1)
        grid.addWidget(self.accept_all_button, 1, 0)
        grid.addWidget(self.reject_all_button, 1, 1)
        layout.addLayout(grid)
        layout.addStretch(1)
        self.slider.valueChanged.connect(self._on_slider)
        self.accept_button.clicked.connect(self.accept_selected)
        self.reject_button.clicked.connect(self.reject_selected)
        self.accept_all_button.clicked.connect(self.accept_all)
        self.reject_all_button.clicked.connect(self.reject_all)
        self._on_slider(self.slider.value())

    def threshold(self) -> float:
        return self.slider.value() / 100.0

    def set_threshold(self, value: float) -> None:
        self.slider.setValue(round(max(0.0, min(1.0, value)) * 100))
        self.refresh()

    def set_project(self, project: Project | None) -> None:
        self._project = project
        self.refresh()

    def accept_selected(self) -> None:
        self._canvas.accept(self._selected_proposals())

    def reject_selected(self) -> None:
        self._canvas.reject(self._selected_proposals())

    def accept_all(self) -> None:
        self._canvas.accept_all_visible()

    def reject_all(self) -> None:
        self._canvas.reject_all_visible()

    def _selected_proposals(self) -> list[int]:
        if self._project is None:
            return []
        image_id = self._canvas.current_image_id()
        if image_id is None:
            return []
        pending = {a.id for a in self._project.annotations(image_id, states=[State.PROPOSED])}
        return [i for i in self._canvas.selected_ids() if i in pending]

    def refresh(self) -> None:
        """Recount the current image's proposals (after a change or a new auto-label result)."""
        image_id = self._canvas.current_image_id()
        if self._project is None or image_id is None:
            self.summary.setText("No image")
            self._enable(False, False)
            return
        proposals = self._project.annotations(image_id, states=[State.PROPOSED])
        shown = [p for p in proposals if p.score is None or p.score >= self.threshold()]
        if not proposals:
            self.summary.setText("No proposals on this image. Auto-label it to get some.")
        else:
            self.summary.setText(f"{len(shown)} of {len(proposals)} proposals shown (score ≥ {self.threshold():.2f})")
        self._enable(bool(shown), bool(proposals))

    def _enable(self, shown: bool, any_: bool) -> None:
        selected = bool(self._selected_proposals()) if any_ else False
        self.accept_button.setEnabled(selected)
        self.reject_button.setEnabled(selected)
        self.accept_all_button.setEnabled(shown)
        self.reject_all_button.setEnabled(shown)

    def _on_slider(self, value: int) -> None:
        self.threshold_label.setText(f"{value / 100:.2f}")
        self._canvas.set_score_threshold(value / 100.0)
        self.thresholdChanged.emit(value / 100.0)
        self.refresh()

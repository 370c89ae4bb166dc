"""Proposal review: score threshold, accept / reject selected, accept all shown, reject all shown.

Every action delegates to the canvas, which pushes undoable commands (so Ctrl+Z brings a
rejected proposal back).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QGridLayout, QLabel, QPushButton, QSlider, QVBoxLayout, QWidget

from labeler.core.annotation import Annotation, State
from labeler.core.store import Project

if TYPE_CHECKING:
    from labeler.gui.canvas import AnnotationCanvas


ALL_PLUGINS = "All plugins"


class ProposalsPanel(QWidget):
    """Controls for the proposals on the current image: the score threshold and the plugin filter
    are the canvas's :class:`~labeler.core.proposal_filter.ProposalFilter`."""

    def __init__(self, canvas: AnnotationCanvas, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._canvas = canvas
        self._project: Project | None = None
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 100)
        self.slider.setValue(50)
        self.slider.setToolTip("Hide proposals scoring below this")
        self.threshold_label = QLabel()
        self.plugin_filter = QComboBox()
        self.plugin_filter.setToolTip("Show the proposals of one plugin, or of all")
        self.plugin_filter.addItem(ALL_PLUGINS)
        self.summary = QLabel("No image")
        self.summary.setWordWrap(True)
        self.accept_button = QPushButton("Accept selected")
        self.reject_button = QPushButton("Reject selected")
        self.accept_all_button = QPushButton("Accept all shown")
        self.reject_all_button = QPushButton("Reject all shown")
        self.accept_button.setToolTip(
            "Accept the selected proposals, or the one under the pointer, or the only one (Y)"
        )
        self.reject_button.setToolTip(
            "Reject the selected proposals, or the one under the pointer, or the only one (X)"
        )
        self.accept_all_button.setToolTip("Accept every proposal above the threshold (Shift+Y)")
        self.reject_all_button.setToolTip("Reject every proposal above the threshold (Shift+X)")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        row = QGridLayout()
        row.addWidget(QLabel("Min. score"), 0, 0)
        row.addWidget(self.slider, 0, 1)
        row.addWidget(self.threshold_label, 0, 2)
        row.addWidget(QLabel("From"), 1, 0)
        row.addWidget(self.plugin_filter, 1, 1, 1, 2)
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
        self.plugin_filter.currentTextChanged.connect(self._on_plugin_filter)
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
        if project is not self._project:
            self.plugin_filter.setCurrentText(ALL_PLUGINS)
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
        """The selected proposals; else the one under the pointer; else the only one shown."""
        if self._project is None or self._canvas.current_image_id() is None:
            return []
        return self._canvas.proposal_targets()

    def refresh(self, *, proposals: Sequence[Annotation] | None = None) -> None:
        """Recount the current image's proposals (after a change or a new auto-label result);
        ``proposals`` are the image's as just read, if the caller has them (else they are read)."""
        image_id = self._canvas.current_image_id()
        if self._project is None or image_id is None:
            self.summary.setText("No image")
            self._enable(False, False)
            return
        if proposals is None:
            proposals = self._project.annotations(image_id, states=[State.PROPOSED])
        by_plugin = Counter(self._canvas.plugin_of(p) for p in proposals)
        self._list_plugins(sorted(by_plugin))
        shown_by = self._canvas.proposal_filter()
        chosen = shown_by.plugin
        shown = [p for p in proposals if shown_by.passes(score=p.score, plugin=self._canvas.plugin_of(p))]
        if not proposals:
            self.summary.setText("No proposals on this image. Auto-label it to get some.")
        else:
            source = ", ".join(f"{n} by {plugin}" for plugin, n in sorted(by_plugin.items()))
            self.summary.setText(
                f"{len(shown)} of {len(proposals)} proposals shown (score ≥ {shown_by.min_score:.2f}"
                f"{'' if chosen is None else f', {chosen} only'}): {source}"
            )
        self._enable(bool(shown), bool(proposals))

    def _list_plugins(self, plugins: list[str]) -> None:
        """Offer every plugin that has proposals on this image (and the one chosen), keeping the choice."""
        chosen = self.plugin_filter.currentText()
        wanted = [ALL_PLUGINS, *sorted(set(plugins) | {chosen} - {ALL_PLUGINS})]
        if [self.plugin_filter.itemText(i) for i in range(self.plugin_filter.count())] != wanted:
            self.plugin_filter.blockSignals(True)
            self.plugin_filter.clear()
            self.plugin_filter.addItems(wanted)
            self.plugin_filter.setCurrentText(chosen)
            self.plugin_filter.blockSignals(False)

    def _on_plugin_filter(self, text: str) -> None:
        self._canvas.set_proposal_plugin(None if text in (ALL_PLUGINS, "") else text)
        self.refresh()

    def _enable(self, shown: bool, any_: bool) -> None:
        selected = bool(self._selected_proposals()) if any_ else False
        self.accept_button.setEnabled(selected)
        self.reject_button.setEnabled(selected)
        self.accept_all_button.setEnabled(shown)
        self.reject_all_button.setEnabled(shown)

    def _on_slider(self, value: int) -> None:
        self.threshold_label.setText(f"{value / 100:.2f}")
        self._canvas.set_score_threshold(value / 100.0)
        self.refresh()

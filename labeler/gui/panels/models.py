"""The model list: every trained version of the chosen plugin with its metrics; make one active."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QMessageBox,
    QPushButton,
    QTableWidgetItem,
    QWidget,
)

from labeler.core.store import ModelVersion, Project, ProjectError
from labeler.gui.panels.plot import VersionScore
from labeler.gui.panels.table_panel import lay_out, row_table
from labeler.learning.usable import skipped_summary
from labeler.learning.version_metrics import metric_label, ranking_metric


def _when(created: float | None) -> str:
    """``14:05`` for today, ``11-27 14:05`` before (local time)."""
    if not created:
        return ""
    local = time.localtime(created)
    same_day = time.strftime("%Y-%m-%d", local) == time.strftime("%Y-%m-%d")
    return time.strftime("%H:%M" if same_day else "%m-%d %H:%M", local)


class ModelListPanel(QWidget):
    """Versions of one plugin, newest first. ``versionActivated(id)`` after a roll back / forward;
    ``scoresChanged(scores, metric)`` after every reload: each version's validation score, oldest
    first (:class:`~labeler.gui.panels.plot.VersionScore`), and the name of the metric that ranks them."""

    versionActivated = Signal(int)
    scoresChanged = Signal(list, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._project: Project | None = None
        self._plugin: str | None = None
        self.table = row_table(
            ["", "Version", "Validation", "Images", "Trained"], QAbstractItemView.SelectionMode.SingleSelection
        )
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(4, QHeaderView.ResizeMode.ResizeToContents)
        self.activate_button = QPushButton("Make active")
        self.activate_button.setToolTip("Use this version for auto-labelling (roll back or forward)")
        lay_out(self, self.table, self.activate_button)
        self.activate_button.clicked.connect(self.activate_selected)
        self.table.itemSelectionChanged.connect(self._update_button)
        self.table.itemDoubleClicked.connect(lambda _item: self.activate_selected())
        self._update_button()

    def set_project(self, project: Project | None, plugin: str | None) -> None:
        self._project, self._plugin = project, plugin
        self.reload()

    def versions(self) -> list[ModelVersion]:
        if self._project is None or not self._plugin:
            return []
        return list(reversed(self._project.model_versions(self._plugin)))

    def reload(self) -> None:
        versions = self.versions()
        self.table.setRowCount(len(versions))
        scores: list[VersionScore] = []
        ranked_by = ""
        for row, v in enumerate(versions):
            numbers = {k: val for k, val in v.metrics.items() if isinstance(val, (int, float)) and k != "images"}
            ranking = self._ranking_metric(v)
            ranked_by = ranked_by or ranking or ""
            score = numbers.get(ranking) if ranking else next(iter(numbers.values()), None)
            scores.append(VersionScore(int(v.id or 0), None if score is None else float(score), v.active))
            if ranking in numbers:  # the metric that decides which version is better comes first
                numbers = {ranking: numbers[ranking]} | numbers
            # the cell shows the deciding metric; the tooltip all of them
            metrics = next((f"{metric_label(k)} {val:.3f}" for k, val in numbers.items()), "")
            created = _when(v.created)
            trained_on = v.images_trained_on
            images = "" if trained_on is None else str(trained_on)
            skipped = v.data.get("skipped")
            skipped = skipped if isinstance(skipped, dict) else {}
            if skipped:
                images += f" ({sum(skipped.values())} skipped)"
            cells = ["●" if v.active else "", f"#{v.id}", metrics or "—", images, created]
            tip = "\n".join(
                [f"{metric_label(k)}: {val:.4f}" for k, val in numbers.items()]
                + [f"{k}: {v.data[k]}" for k in ("seconds", "steps", "stopped_by") if k in v.data]
                + (
                    [
                        f"refit on {v.data['refit'].get('images')} images, the "
                        f"{v.data['refit'].get('validation_images')} validation ones included"
                    ]
                    if isinstance(v.data.get("refit"), dict)
                    else []
                )
                + ([f"warm-started from #{v.parent}"] if v.parent else [])
                + ([skipped_summary(skipped)] if skipped else [])
            )
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, v.id)
                item.setToolTip(tip)
                if v.active:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.table.setItem(row, col, item)
        self._update_button()
        self.scoresChanged.emit(scores[::-1], metric_label(ranked_by) if ranked_by else "")

    def _ranking_metric(self, version: ModelVersion) -> str | None:
        return None if self._project is None else ranking_metric(self._project.root, version)

    def selected_version(self) -> int | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 1)
        return int(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None

    def select_version(self, version_id: int) -> None:
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 1)
            if item is not None and item.data(Qt.ItemDataRole.UserRole) == version_id:
                self.table.selectRow(row)
                return

    def activate_selected(self) -> None:
        version_id = self.selected_version()
        if version_id is None or self._project is None:
            return
        try:
            self._project.activate_model_version(version_id)
        except ProjectError as exc:  # e.g. an annotator's: the database refused, nothing changed
            QMessageBox.warning(self, "Activate model version", str(exc))
            return
        self.reload()
        self.select_version(version_id)
        self.versionActivated.emit(version_id)

    def _update_button(self) -> None:
        version_id = self.selected_version()
        active = any(v.active and v.id == version_id for v in self.versions()) if version_id is not None else True
        self.activate_button.setEnabled(version_id is not None and not active)

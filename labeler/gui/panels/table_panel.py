"""The layout the Models and Objects panels share: a table of rows, one button under it at the right."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtWidgets import QAbstractItemView, QHBoxLayout, QPushButton, QTableWidget, QVBoxLayout, QWidget


def row_table(headers: Sequence[str], selection: QAbstractItemView.SelectionMode) -> QTableWidget:
    """An empty read-only table with ``headers``, no row numbers, that selects whole rows."""
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(list(headers))
    table.verticalHeader().setVisible(False)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(selection)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    return table


def lay_out(panel: QWidget, table: QTableWidget, button: QPushButton) -> None:
    """Put ``table`` over the whole of ``panel`` with ``button`` at the right below it."""
    layout = QVBoxLayout(panel)
    layout.setContentsMargins(4, 4, 4, 4)
    layout.addWidget(table, 1)
    row = QHBoxLayout()
    row.addStretch(1)
    row.addWidget(button)
    layout.addLayout(row)

"""Import and export dialogs for every format of :data:`labeler.formats.FORMATS`.

The work runs in a worker thread (``labeler.formats.import_annotations`` / ``export_annotations``)
with a progress bar; Cancel raises from the progress callback, which the formats treat as "stop":
an import rolls back, an export leaves nothing half-written. The worker opens its own connection
to the project (``Project.open_again``, closed when done): an import holds its write transaction
for its whole length, and on the window's own ``Project`` that would hold the project's lock too,
so every store query of the UI would wait for the import. With its own connection the UI keeps
reading (SQLite WAL: readers see the last commit) and sees the import once it commits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from labeler.core.import_undo import ImportRecord
from labeler.core.store import Project
from labeler.gui.controllers.workers import FunctionWorker
from labeler.gui.dialogs.fields import FolderField

# Format options the dialogs offer (the keyword options of ``labeler.formats``' functions, see
# ``Format.options``): choices (the first is the default), free text, or an integer.
OPTION_CHOICES: dict[str, tuple[str, ...]] = {
    "masks": ("rle", "polygon"),
    "file_names": ("relative", "name"),
}
OPTION_LABELS = {
    "masks": "Masks as",
    "file_names": "Image file names",
    "values": "Pixel values → classes",
    "ignore": "Ignore value",
    "background": "Background value",
}
#: ``(minimum, maximum, default)`` of integer options; an option whose minimum is -1 shows -1 as
#: "automatic" and passes ``None`` (the format's own default).
OPTION_INTEGERS: dict[str, tuple[int, int, int]] = {
    "ignore": (-1, 65535, -1),
    "background": (0, 255, 0),
}
OPTION_TIPS = {
    "values": "VALUE=CLASS pairs separated by commas (0=background,1=cat,2=dog), or the path of a text "
    "file naming the class of value 0, 1, 2… one per line. A class named _background_ is "
    "background. Empty: every value becomes a class named by its number (import; or what the "
    "folder's mapping.json says), or the project's classes numbered from 1 (export).",
    "ignore": "Pixels of this value are 'unknown': imported as the image's ignore mask; on export, "
    "written where nothing is known. Automatic: 255 (or the mapping.json's value).",
    "background": "The value written for pixels of done images that no label covers.",
}
AUTO = "(detect from the files)"


class Cancelled(Exception):
    """Raised from the progress callback to stop an import or export."""


class _TransferDialog(QDialog):
    """Shared parts: format choice, path, options, progress, run / cancel. Subclasses define
    ``browse()`` (pick the path) and ``run()`` (start the work)."""

    succeeded = Signal(object)  # the ImportReport / ExportReport
    failed = Signal(str)
    verb = "export"

    def __init__(self, project: Project, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from labeler.formats import FORMATS

        self.project = project
        self.formats = {
            name: f for name, f in FORMATS.items() if (f.can_export if self.verb == "export" else f.can_import)
        }
        self.worker: FunctionWorker | None = None
        self._cancel = False
        self.format_combo = QComboBox()
        self.description = QLabel()
        self.description.setWordWrap(True)
        self.path_edit = QLineEdit()
        self.browse_button = QPushButton("Browse…")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.result_label = QLabel()
        self.result_label.setWordWrap(True)
        self.buttons = QDialogButtonBox()
        self.run_button = self.buttons.addButton(self.verb.capitalize(), QDialogButtonBox.ButtonRole.AcceptRole)
        self.close_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.form = QFormLayout()
        self.form.addRow("Format", self.format_combo)
        self.form.addRow("", self.description)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(self.browse_button)
        self.form.addRow("File or folder", path_row)
        self.option_widgets: dict[str, QWidget] = {}
        layout = QVBoxLayout(self)
        layout.addLayout(self.form)
        layout.addWidget(self.progress)
        layout.addWidget(self.result_label)
        layout.addWidget(self.buttons)
        self.run_button.clicked.connect(self.run)
        self.close_button.clicked.connect(self._close_or_cancel)
        self.browse_button.clicked.connect(self.browse)
        self.format_combo.currentTextChanged.connect(self._on_format)
        self.path_edit.textChanged.connect(lambda _t: self._update_run())
        self.resize(560, 0)

    def format_name(self) -> str | None:
        text = self.format_combo.currentText()
        return None if text == AUTO else text

    def set_path(self, path: str | Path) -> None:
        self.path_edit.setText(str(path))

    def run(self) -> None:
        """Start the import or export (each dialog says which)."""
        raise NotImplementedError

    def browse(self) -> None:
        """Ask for the file to read or write."""
        raise NotImplementedError

    def running(self) -> bool:
        return self.worker is not None and not self.worker.done

    def _on_format(self, name: str) -> None:
        fmt = self.formats.get(name)
        self.description.setText(
            fmt.description if fmt is not None else "The format is guessed from the names and contents of the files."
        )
        self._fit_description()
        self._update_run()

    def _fit_description(self) -> None:
        """Give the wrapped help text the height it needs at its width (layouts do not ask a
        wrapped label for its height at a given width, so a long text was clipped)."""
        label = self.description
        label.setMinimumHeight(label.heightForWidth(max(label.width(), 1)))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit_description()

    def _add_option_rows(self) -> None:
        """One row per option any format of this dialog's verb has; :meth:`_on_format` shows the
        rows of the chosen format."""
        names: list[str] = []
        for fmt in self.formats.values():
            names += [n for n in fmt.options(self.verb) if n not in names]
        for name in names:
            widget: QWidget
            if name in OPTION_CHOICES:
                combo = QComboBox()
                combo.addItems(list(OPTION_CHOICES[name]))
                widget = combo
            elif name in OPTION_INTEGERS:
                low, high, default = OPTION_INTEGERS[name]
                spin = QSpinBox()
                spin.setRange(low, high)
                spin.setValue(default)
                if low == -1:
                    spin.setSpecialValueText("automatic")
                widget = spin
            else:
                edit = QLineEdit()
                edit.setPlaceholderText("0=background,1=cat,2=dog  or a class names file")
                widget = edit
            widget.setToolTip(OPTION_TIPS.get(name, ""))
            self.option_widgets[name] = widget
            self.form.addRow(OPTION_LABELS.get(name, name.replace("_", " ").capitalize()), widget)

    def options(self) -> dict[str, Any]:
        """The chosen format's options as keyword arguments; empty text and "automatic" are left
        out (the format's defaults apply)."""
        fmt = self.formats.get(self.format_combo.currentText())
        allowed = fmt.options(self.verb) if fmt is not None else ()
        out: dict[str, Any] = {}
        for name, widget in self.option_widgets.items():
            if name not in allowed:
                continue
            if isinstance(widget, QComboBox):
                out[name] = widget.currentText()
            elif isinstance(widget, QSpinBox):
                if not (widget.minimum() == -1 and widget.value() == -1):
                    out[name] = widget.value()
            elif isinstance(widget, QLineEdit) and widget.text().strip():
                out[name] = widget.text().strip()
        return out

    def _show_option_rows(self, name: str) -> None:
        fmt = self.formats.get(name)
        allowed = fmt.options(self.verb) if fmt is not None else ()
        for option, widget in self.option_widgets.items():
            self.form.setRowVisible(widget, option in allowed)

    def _update_run(self) -> None:
        self.run_button.setEnabled(bool(self.path_edit.text().strip()) and not self.running())

    def _progress(self, done: int, total: int, signal: Any) -> None:
        if self._cancel:
            raise Cancelled("cancelled")
        signal(done, total)

    def _start(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        self._cancel = False
        self.result_label.setText("Working…")
        self.progress.setRange(0, 0)
        worker = FunctionWorker(fn, *args, with_progress=True, **kwargs)
        worker.signals.progress.connect(self._show_progress)
        worker.signals.finished.connect(self._on_finished)
        worker.signals.failed.connect(self._on_failed)
        self.worker = worker
        worker.start()
        self._update_run()
        self.close_button.setText("Cancel")

    def _show_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)

    def _on_finished(self, report: Any) -> None:
        self.worker = None
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.result_label.setText(report.summary())
        self.close_button.setText("Close")
        self._update_run()
        self.succeeded.emit(report)

    def _on_failed(self, message: str) -> None:
        self.worker = None
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        cancelled = message.endswith("cancelled")
        self.result_label.setText(
            f"{self.verb.capitalize()} cancelled; nothing was changed."
            if cancelled
            else f"{self.verb.capitalize()} failed: {message}"
        )
        self.close_button.setText("Close")
        self._update_run()
        self.failed.emit(message)

    def _close_or_cancel(self) -> None:
        if self.running():
            self._cancel = True
        else:
            self.reject()


def _with_progress(fn: Any, dialog: _TransferDialog) -> Any:
    """Wrap an import/export function ``fn(project, ...)`` for the worker: it gets its own
    connection to the dialog's project (opened and closed in the worker thread), and a progress
    callback that also checks for cancel."""
    origin = dialog.project

    def call(*args: Any, progress: Any, **kwargs: Any) -> Any:
        project = origin.open_again()  # the same project on either backend (a folder, or a URL)
        try:
            return fn(project, *args, progress=lambda d, t: dialog._progress(d, t, progress), **kwargs)
        finally:
            project.close()

    return call


class ExportDialog(_TransferDialog):
    """Export the project's labels: format, where, proposals or not, format options."""

    verb = "export"

    def __init__(self, project: Project, parent: QWidget | None = None) -> None:
        super().__init__(project, parent)
        self.setWindowTitle("Export labels")
        self.include_proposals = QCheckBox("Also export proposals not yet reviewed (with their scores)")
        self.form.addRow("", self.include_proposals)
        self._add_option_rows()
        self.option_combos = {n: w for n, w in self.option_widgets.items() if isinstance(w, QComboBox)}
        self.format_combo.addItems(list(self.formats))
        self._on_format(self.format_combo.currentText())

    def _on_format(self, name: str) -> None:
        super()._on_format(name)
        self._show_option_rows(name)
        fmt = self.formats.get(name)
        if fmt is not None and self.path_edit.text():
            path = Path(self.path_edit.text())
            if not fmt.export_is_folder and path.suffix.lower() != ".json":
                self.path_edit.setText(
                    str(path.with_suffix(".json")) if path.suffix else str(path / "annotations.json")
                )

    def browse(self) -> None:
        fmt = self.formats[self.format_combo.currentText()]
        start = str(self.project.root)
        if fmt.export_is_folder:
            path = QFileDialog.getExistingDirectory(self, "Export into folder", start)
        else:
            path, _ = QFileDialog.getSaveFileName(
                self, "Export to file", str(Path(start) / "annotations.json"), "JSON (*.json)"
            )
        if path:
            self.set_path(path)

    def run(self) -> None:
        from labeler.formats import export_annotations

        out = Path(self.path_edit.text().strip()).expanduser()
        self._start(
            _with_progress(export_annotations, self),
            out,
            format=self.format_combo.currentText(),
            include_proposals=self.include_proposals.isChecked(),
            **self.options(),
        )


def _recorded_import(project: Project, *args: Any, **kwargs: Any) -> tuple[Any, ImportRecord]:
    """:func:`labeler.formats.import_annotations`, with what it changed (to undo it)."""
    import labeler.formats
    from labeler.core.import_undo import record_import

    return record_import(project, lambda: labeler.formats.import_annotations(project, *args, **kwargs))


class ImportDialog(_TransferDialog):
    """Import labels into the project: format (or detect), file or folder, images folder, mark done.
    After an import it offers to take it back (``undone(text)`` once it did)."""

    undone = Signal(str)

    verb = "import"

    def __init__(self, project: Project, parent: QWidget | None = None) -> None:
        super().__init__(project, parent)
        self.setWindowTitle("Import labels")
        self.imported = False
        self.browse_folder_button = QPushButton("Folder…")
        self.browse_button.setText("File…")
        field = self.form.itemAt(self.form.rowCount() - 1, QFormLayout.ItemRole.FieldRole)
        row = field.layout() if field is not None else None
        if row is None:
            raise RuntimeError("the path row of the import form has no layout")
        row.addWidget(self.browse_folder_button)
        self.images_field = FolderField(
            "Images folder",
            "where the images are, if the labels' paths do not find them",
            start_in=str(self.project.root),
        )
        self.images_edit = self.images_field.edit
        self.form.addRow("Images folder", self.images_field)
        self.mark_done = QCheckBox("Mark the imported images done")
        self.mark_done.setChecked(True)
        self.form.addRow("", self.mark_done)
        self.add_images = QCheckBox("Add images that are not in the project yet")
        self.add_images.setToolTip(
            "Off: each label file's image is matched to the project's images (by relative "
            "path, then file name), the others are skipped and counted. labelme's default "
            "is off, the other formats' on."
        )
        self._add_images_touched = False
        self.add_images.clicked.connect(lambda _c: setattr(self, "_add_images_touched", True))
        self.form.addRow("", self.add_images)
        self._add_option_rows()
        self.format_combo.addItems([AUTO, *self.formats])
        self._on_format(self.format_combo.currentText())
        self.browse_folder_button.clicked.connect(self.browse_folder)
        self.succeeded.connect(lambda _r: setattr(self, "imported", True))
        self.last_import: ImportRecord | None = None  # what the last import here changed
        self.undo_button = self.buttons.addButton("Undo this import", QDialogButtonBox.ButtonRole.ActionRole)
        self.undo_button.setToolTip("Take the import back in one step: remove exactly what it added")
        self.undo_button.setVisible(False)
        self.undo_button.clicked.connect(self.undo_last_import)

    def _on_finished(self, result: Any) -> None:
        report, self.last_import = result
        self.undo_button.setVisible(self.last_import is not None and not self.last_import.is_empty())
        super()._on_finished(report)

    def undo_last_import(self) -> None:
        """Remove what the last import added (one transaction); ``undone(text)`` says what."""
        from labeler.core.import_undo import undo_import

        record, self.last_import = self.last_import, None
        self.undo_button.setVisible(False)
        if record is None:
            return
        try:
            undo_import(self.project, record)
        except Exception as exc:  # noqa: BLE001 - the store refused: nothing was changed
            self.result_label.setText(f"The import could not be undone ({exc}); the project is as it was after it.")
            return
        text = f"Import undone: removed {record.describe()}."
        self.result_label.setText(text)
        self.undone.emit(text)

    def _on_format(self, name: str) -> None:
        super()._on_format(name)
        self._show_option_rows(name)
        if name == AUTO:
            self.description.setText(self.description.text() + " Pick the format to set its options.")
        if hasattr(self, "add_images") and not self._add_images_touched:
            self.add_images.setChecked(name not in (AUTO, "labelme"))

    def browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Labels file", str(self.project.root), "Labels (*.json *.xml *.txt *.png);;All files (*)"
        )
        if path:
            self.set_path(path)

    def browse_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Labels folder", str(self.project.root))
        if path:
            self.set_path(path)

    def run(self) -> None:
        source = Path(self.path_edit.text().strip()).expanduser()
        images = self.images_edit.text().strip()
        self.last_import = None
        self.undo_button.setVisible(False)
        self._start(
            _with_progress(_recorded_import, self),
            source,
            format=self.format_name(),
            images_dir=Path(images).expanduser() if images else None,
            mark_done=self.mark_done.isChecked(),
            add_images=self.add_images_choice(),
            **self.options(),
        )

    def add_images_choice(self) -> bool | None:
        """The checkbox, or ``None`` (the format's default) while it is untouched and the format is guessed."""
        if self.format_name() is None and not self._add_images_touched:
            return None
        return self.add_images.isChecked()

"""Export and import dialogs: every format through the dialog, COCO read back with pycocotools."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

pytest.importorskip("pytestqt")

from backends import Backend
from gui_support import make_project

from labeler.core.annotation import Annotation, Kind
from labeler.core.geometry import encode_mask
from labeler.core.store import Project
from labeler.gui.dialogs.transfer_dialogs import ExportDialog, ImportDialog


def labelled_project(backend: Backend, root: Path) -> Project:
    make_project(backend, root, 3)
    project = backend.open(root)
    cat, dog = project.categories()
    first, second, _ = project.images()
    mask = np.zeros((64, 64), dtype=bool)
    mask[10:30, 20:40] = True
    project.add_annotations(
        [
            Annotation(image_id=first.id, category_id=cat.id, kind=Kind.BOX, box_xywh=(5, 6, 20, 10)),
            Annotation(
                image_id=first.id,
                category_id=dog.id,
                kind=Kind.POLYGON,
                polygons=(np.array([[30, 30], [60, 30], [45, 60]], dtype=float),),
            ),
            Annotation(image_id=second.id, category_id=cat.id, kind=Kind.MASK, rle=encode_mask(mask)),
        ]
    )
    project.set_done(first.id)
    project.set_done(second.id)
    return project


def run_dialog(qtbot: QtBot, dialog) -> object:
    with qtbot.waitSignal(dialog.succeeded, timeout=30_000) as blocker:
        qtbot.mouseClick(dialog.run_button, Qt.MouseButton.LeftButton)
    return blocker.args[0]


def test_export_coco_loads_in_pycocotools(qtbot: QtBot, backend: Backend, tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    project = labelled_project(backend, tmp_path / "proj")
    dialog = ExportDialog(project)
    qtbot.addWidget(dialog)
    dialog.format_combo.setCurrentText("coco")
    dialog.option_combos["masks"].setCurrentText("rle")
    out = tmp_path / "out" / "instances.json"
    dialog.set_path(out)
    report = run_dialog(qtbot, dialog)
    assert "3 annotations" in dialog.result_label.text()
    assert dialog.run_button.isEnabled() and dialog.close_button.text() == "Close"  # ready for another run
    coco = COCO(str(out))
    assert len(coco.getAnnIds()) == 3 == report.annotations
    assert sorted(c["name"] for c in coco.loadCats(coco.getCatIds())) == ["cat", "dog"]
    areas = sorted(coco.annToMask(a).sum() for a in coco.loadAnns(coco.getAnnIds()))
    assert 20 * 20 in areas  # the mask, pixel for pixel
    project.close()


@pytest.mark.parametrize("fmt", ["labelme", "voc", "yolo", "masks"])
def test_every_folder_format_exports_through_the_dialog(
    qtbot: QtBot, backend: Backend, tmp_path: Path, fmt: str
) -> None:
    project = labelled_project(backend, tmp_path / "proj")
    dialog = ExportDialog(project)
    qtbot.addWidget(dialog)
    dialog.format_combo.setCurrentText(fmt)
    assert not dialog.form.isRowVisible(dialog.option_combos["masks"]) or fmt == "coco"
    dialog.set_path(tmp_path / f"out_{fmt}")
    run_dialog(qtbot, dialog)
    assert any((tmp_path / f"out_{fmt}").iterdir())
    project.close()


def test_import_coco_with_detected_format(qtbot: QtBot, backend: Backend, tmp_path: Path) -> None:
    source = labelled_project(backend, tmp_path / "src")
    out = tmp_path / "src" / "export.json"
    from labeler.formats import export_annotations

    export_annotations(source, out, format="coco")
    source.close()
    target = backend.create(tmp_path / "dst")
    dialog = ImportDialog(target)
    qtbot.addWidget(dialog)
    assert dialog.format_name() is None  # detect
    dialog.set_path(out)
    dialog.images_edit.setText(str(tmp_path / "src"))
    report = run_dialog(qtbot, dialog)
    assert dialog.imported
    assert report.annotations == 3
    assert {c.name for c in target.categories()} == {"cat", "dog"}
    assert target.image_count(done=True) == 2
    target.close()


def test_failed_import_says_why_and_changes_nothing(qtbot: QtBot, backend: Backend, tmp_path: Path) -> None:
    project = backend.create(tmp_path / "p")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    dialog = ImportDialog(project)
    qtbot.addWidget(dialog)
    dialog.format_combo.setCurrentText("coco")
    dialog.set_path(bad)
    with qtbot.waitSignal(dialog.failed, timeout=10_000):
        qtbot.mouseClick(dialog.run_button, Qt.MouseButton.LeftButton)
    assert "failed" in dialog.result_label.text() and "bad.json" in dialog.result_label.text()
    assert project.image_count() == 0 and not project.categories()
    project.close()


def test_long_import_leaves_the_window_responsive_and_refreshes_it(
    qtbot: QtBot, backend: Backend, tmp_path: Path, monkeypatch
) -> None:
    """The import runs on its own connection: while its transaction is open (held open here until
    the UI thread has queried the window's project), a timer keeps ticking and the window's store
    queries answer; once it commits the window shows the imported images."""
    import json
    import threading
    import time

    import cv2

    import labeler.formats
    from labeler.gui.main_window import MainWindow

    count = 150
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    pixels = np.zeros((8, 8, 3), dtype=np.uint8)
    coco: dict[str, list[dict[str, object]]] = {
        "images": [],
        "annotations": [],
        "categories": [{"id": 1, "name": "cat"}],
    }
    for i in range(count):
        cv2.imwrite(str(src / "images" / f"im{i:04d}.png"), pixels)
        coco["images"].append({"id": i + 1, "file_name": f"images/im{i:04d}.png", "width": 8, "height": 8})
        coco["annotations"].append(
            {"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [1, 1, 4, 4], "area": 16, "iscrowd": 0}
        )
    (src / "labels.json").write_text(json.dumps(coco))
    make_project(backend, tmp_path / "p", 2)

    inside = threading.Event()  # the worker is inside the import's transaction
    go_on = threading.Event()  # the UI thread answered its query
    real_import = labeler.formats.import_annotations

    def gated_import(project, source, *, progress, **kwargs):
        def gate(done: int, total: int) -> None:
            if done and not go_on.is_set():
                inside.set()
                go_on.wait(20)
            progress(done, total)

        return real_import(project, source, progress=gate, **kwargs)

    monkeypatch.setattr(labeler.formats, "import_annotations", gated_import)
    win = MainWindow(interactive=False)
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.canvas.imageShown, timeout=20_000):
        backend.open_in(win, tmp_path / "p")
    assert win.images.model.rowCount() == 2
    ticks: list[float] = []
    query_seconds: list[float] = []
    timer = QTimer()
    timer.setInterval(5)

    def tick() -> None:
        ticks.append(time.perf_counter())
        if inside.is_set() and not go_on.is_set():
            t0 = time.perf_counter()
            assert win.project is not None and win.project.image_count() == 2  # not yet committed
            query_seconds.append(time.perf_counter() - t0)
            go_on.set()

    timer.timeout.connect(tick)
    timer.start()
    dialog = win.import_dialog()
    dialog.set_path(src / "labels.json")
    dialog.format_combo.setCurrentText("coco")
    try:
        with qtbot.waitSignal(dialog.succeeded, timeout=60_000):
            qtbot.mouseClick(dialog.run_button, Qt.MouseButton.LeftButton)
            qtbot.waitUntil(inside.is_set, timeout=20_000)
            n_before = len(ticks)
            qtbot.waitUntil(lambda: len(ticks) > n_before + 3, timeout=5_000)  # the timer keeps firing
    finally:
        go_on.set()
        timer.stop()
    assert query_seconds and query_seconds[0] < 2.0
    assert win.project is not None and win.project.image_count() == 2 + count
    assert win.images.model.rowCount() == 2 + count  # the window was refreshed
    win.shutdown()


def test_masks_options_in_both_dialogs(qtbot: QtBot, backend: Backend, tmp_path: Path) -> None:
    """The masks format's value-to-class mapping, ignore and background values are set in the
    dialogs; formats without options (YOLO, VOC) show none."""
    import json

    from labeler.formats.masks import read_label_png

    project = labelled_project(backend, tmp_path / "proj")
    dialog = ExportDialog(project)
    qtbot.addWidget(dialog)
    for fmt in ("yolo", "voc", "labelme"):
        dialog.format_combo.setCurrentText(fmt)
        assert not any(dialog.form.isRowVisible(w) for w in dialog.option_widgets.values())
        assert dialog.options() == {}
    dialog.format_combo.setCurrentText("masks")
    widgets = dialog.option_widgets
    assert all(dialog.form.isRowVisible(widgets[n]) for n in ("values", "ignore", "background"))
    assert dialog.options() == {"background": 0}  # empty text / "automatic" ignore: the format's defaults
    widgets["values"].setText("3=cat, 7=dog")
    widgets["ignore"].setValue(200)
    widgets["background"].setValue(1)
    assert dialog.options() == {"values": "3=cat, 7=dog", "ignore": 200, "background": 1}
    out = tmp_path / "masks_out"
    dialog.set_path(out)
    run_dialog(qtbot, dialog)
    mapping = json.loads((out / "mapping.json").read_text())
    assert mapping["values"] == {"3": "cat", "7": "dog"} and mapping["ignore"] == 200 and mapping["background"] == 1
    second = project.images()[1]
    (png,) = [p for p in out.rglob("*.png") if p.stem == Path(second.path).stem]
    values = read_label_png(png)
    assert values[20, 30] == 3 and values[50, 50] == 1  # the cat mask; background elsewhere (done)
    project.close()

    # Import with a mapping of our own: values 3 and 7 become other class names, 1 is background.
    target = backend.create(tmp_path / "dst")
    importer = ImportDialog(target)
    qtbot.addWidget(importer)
    importer.format_combo.setCurrentText("masks")
    assert "background" not in importer.option_widgets  # import has no background option
    importer.option_widgets["values"].setText("1=_background_,3=kitty,7=doggo")
    importer.option_widgets["ignore"].setValue(200)
    importer.set_path(out)
    importer.images_edit.setText(str(tmp_path / "proj"))
    run_dialog(qtbot, importer)
    assert [c.name for c in target.categories()] == ["kitty", "doggo"]
    masks = [a for a in target.annotations() if a.kind is Kind.MASK]
    names = {c.id: c.name for c in target.categories()}
    assert sorted(names[a.category_id] for a in masks) == ["doggo", "kitty"]  # the dog polygon went out as pixels
    target.close()


def test_import_dialog_adds_labelme_images_only_when_ticked(qtbot: QtBot, backend: Backend, tmp_path: Path) -> None:
    source = labelled_project(backend, tmp_path / "src")
    from labeler.formats import export_annotations

    export_annotations(source, tmp_path / "lm", format="labelme")
    source.close()
    target = backend.create(tmp_path / "dst")
    dialog = ImportDialog(target)
    qtbot.addWidget(dialog)
    dialog.format_combo.setCurrentText("coco")
    assert dialog.add_images.isChecked()  # the other formats add the images they name
    dialog.format_combo.setCurrentText("labelme")
    assert not dialog.add_images.isChecked()
    dialog.set_path(tmp_path / "lm")
    dialog.images_edit.setText(str(tmp_path / "src"))
    report = run_dialog(qtbot, dialog)
    assert report.images == 0 and target.image_count() == 0
    assert "not in the project" in dialog.result_label.text()
    dialog.add_images.click()  # as a click on it does
    assert dialog.add_images.isChecked()
    report = run_dialog(qtbot, dialog)
    assert report.images_added == 2 and target.image_count() == 2
    target.close()


@pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")
def test_each_formats_help_text_is_shown_whole(qtbot: QtBot, tmp_path: Path) -> None:
    """The import dialog grows to the chosen format's help text (it was clipped at top and bottom)."""
    # SQLite only: the dialog's layout, which never reads the store.
    dialog = ImportDialog(Project.create(tmp_path / "proj"))
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    for index in range(dialog.format_combo.count()):
        dialog.format_combo.setCurrentIndex(index)
        QApplication.processEvents()
        label = dialog.description
        assert label.height() >= label.heightForWidth(label.width()), dialog.format_combo.currentText()


def test_the_window_offers_to_undo_an_import_and_undo_removes_exactly_it(
    qtbot: QtBot, backend: Backend, tmp_path: Path
) -> None:
    """After an import the dialog offers "Undo this import"; one click removes the images, labels,
    classes and done marks the import added, keeps a label the user drew before it, and the window
    shows the project as it was."""
    from labeler.formats import export_annotations
    from labeler.gui.main_window import MainWindow

    source = labelled_project(backend, tmp_path / "src")
    export_annotations(source, tmp_path / "src" / "export.json", format="coco")
    source.close()
    make_project(backend, tmp_path / "p", 1, classes=("bird",))
    win = MainWindow(interactive=False)
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.canvas.imageShown, timeout=20_000):
        backend.open_in(win, tmp_path / "p")
    assert win.project is not None
    mine = win.project.add_annotation(Annotation(image_id=1, category_id=1, kind=Kind.BOX, box_xywh=(1, 1, 5, 5)))
    dialog = win.import_dialog()
    qtbot.addWidget(dialog)
    dialog.format_combo.setCurrentText("coco")
    dialog.set_path(tmp_path / "src" / "export.json")
    dialog.images_edit.setText(str(tmp_path / "src"))
    assert not dialog.undo_button.isVisibleTo(dialog)
    report = run_dialog(qtbot, dialog)
    # the export holds two labelled images: img_000.png is the project's own (matched by name), one is added
    assert report.images_matched == 1 and report.images_added == 1
    assert win.project.image_count() == 2 and win.images.model.rowCount() == 2
    assert win.project.image(1).done and len(win.project.annotations()) == 4
    assert dialog.undo_button.isVisibleTo(dialog)
    with qtbot.waitSignal(dialog.undone, timeout=10_000) as blocker:
        qtbot.mouseClick(dialog.undo_button, Qt.MouseButton.LeftButton)
    assert "1 image, 3 labels, 2 classes, 2 done marks" in blocker.args[0]
    assert not win.project.image(1).done
    assert win.project.image_count() == 1 and win.images.model.rowCount() == 1
    assert [c.name for c in win.project.categories()] == ["bird"]
    assert [a.id for a in win.project.annotations()] == [mine.id]
    assert not dialog.undo_button.isVisibleTo(dialog) and "Import undone" in dialog.result_label.text()
    assert "Import undone" in win.statusBar().currentMessage()
    win.shutdown()
    win.set_project(None)

"""The main window driven like a user: open, navigate, filter, classes, mark done, proposals, undo,
status bar, settings, screenshot. Real widgets and the real canvas; waits on signals, never sleeps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox
from pytestqt.qtbot import QtBot

pytest.importorskip("pytestqt")

# The offscreen platform cannot resize native windows; that notice is about the test platform, not us.
pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")

from backends import Backend  # noqa: E402
from gui_helpers import close_window, show_window  # noqa: E402
from gui_support import make_project, write_images  # noqa: E402

from labeler.core.annotation import Annotation, Kind, State  # noqa: E402
from labeler.core.location import child_project  # noqa: E402
from labeler.core.store import ModelVersion, Project  # noqa: E402
from labeler.gui.actions import ActionId  # noqa: E402
from labeler.gui.main_window import MainWindow  # noqa: E402
from labeler.gui.panels.image_list import FILTERS, ImageState  # noqa: E402
from labeler.gui.settings import AppSettings  # noqa: E402


@pytest.fixture
def window(qtbot: QtBot) -> Iterator[MainWindow]:
    win = show_window(qtbot)
    yield win
    close_window(win)


def open_and_wait(qtbot: QtBot, win: MainWindow, backend: Backend, root: Path) -> None:
    """Open the project for folder ``root`` as a user does, and wait for its first image."""
    with qtbot.waitSignal(win.canvas.imageShown, timeout=10_000):
        assert backend.open_in(win, root)
    assert win.project is not None


def open_generated(qtbot: QtBot, win: MainWindow, backend: Backend, tmp_path: Path) -> tuple[Path, int]:
    """A generated two-image project opened in ``win``; its folder and the image shown."""
    root = make_project(backend, tmp_path / "proj", 2)
    open_and_wait(qtbot, win, backend, root)
    image_id = win.current_image_id()
    assert image_id is not None
    return root, image_id


def press(qtbot: QtBot, win: MainWindow, key: Qt.Key, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    """A key press as the user makes it: to the canvas, which has the focus while labelling."""
    win.canvas.view().setFocus()
    qtbot.keyClick(win.canvas.view(), key, modifier)


def test_open_project_navigate_with_keys(qtbot: QtBot, backend: Backend, window: MainWindow, tmp_path: Path) -> None:
    root = make_project(backend, tmp_path / "proj", 5)
    open_and_wait(qtbot, window, backend, root)
    ids = [r.id for r in window.project.images()]
    assert window.current_image_id() == ids[0]
    assert window.images.model.rowCount() == 5
    with qtbot.waitSignal(window.canvas.imageShown, timeout=10_000) as shown:
        press(qtbot, window, Qt.Key.Key_D)
    assert shown.args == [ids[1]]
    press(qtbot, window, Qt.Key.Key_D)
    assert window.current_image_id() == ids[2]
    press(qtbot, window, Qt.Key.Key_A)
    assert window.current_image_id() == ids[1]
    # N skips done images
    window.project.set_done(ids[2], True)
    window.images.model.refresh_image(ids[2])
    press(qtbot, window, Qt.Key.Key_N)
    assert window.current_image_id() == ids[3]
    # U goes to the most uncertain auto-labelled image
    window.project.replace_proposals(ids[4], plugin="test", proposals=[], uncertainty=0.9)
    window.project.replace_proposals(ids[0], plugin="test", proposals=[], uncertainty=0.2)
    press(qtbot, window, Qt.Key.Key_U)
    assert window.current_image_id() == ids[4]
    assert "5 images" in window.images.counts_label.text()
    assert "0 / 5 images done" in window.status.done_label.text() or "1 / 5" in window.status.done_label.text()


def test_open_folder_offers_to_create_a_project(qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # SQLite only: opening a folder of images makes a SQLite project there (a shared project is
    # made with 'labeler init URL'), so there is no PostgreSQL case.
    folder = tmp_path / "photos"
    write_images(folder / "sub", 4)
    asked: list[str] = []

    def answer(_parent, title, text, *args):
        asked.append(text)
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", answer)
    win = MainWindow(interactive=True)
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.projectOpened, timeout=10_000):
        assert win.open_path(folder)
    assert asked and "Create one there" in asked[0]
    assert Project.is_project(folder)
    assert win.project is not None and win.project.image_count() == 4
    assert win.images.model.rowCount() == 4
    assert str(folder.resolve()) in AppSettings().recent_projects()
    win.shutdown()
    win.set_project(None)


def test_declining_leaves_the_folder_alone(qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # SQLite only: opening a folder of images makes a SQLite project there (a shared project is
    # made with 'labeler init URL'), so there is no PostgreSQL case.
    folder = tmp_path / "photos"
    write_images(folder, 2)
    monkeypatch.setattr(QMessageBox, "question", lambda *a: QMessageBox.StandardButton.No)
    win = MainWindow(interactive=True)
    qtbot.addWidget(win)
    assert not win.open_path(folder)
    assert not Project.is_project(folder)
    win.shutdown()


def test_filter_by_state_and_name(qtbot: QtBot, backend: Backend, window: MainWindow, tmp_path: Path) -> None:
    root = make_project(backend, tmp_path / "proj", 12)
    open_and_wait(qtbot, window, backend, root)
    ids = [r.id for r in window.project.images()]
    window.project.set_done(ids[3], True)
    window.images.model.refresh_image(ids[3])
    panel = window.images
    panel.filter_combo.setCurrentText("Done")
    assert panel.model.rowCount() == 1 and panel.model.image_id_at(0) == ids[3]
    panel.filter_combo.setCurrentText("Not done")
    assert panel.model.rowCount() == 11
    panel.filter_combo.setCurrentText("All images")
    panel.search.setFocus()
    qtbot.keyClicks(panel.search, "img_01")  # letters typed into the filter are not shortcuts
    assert panel.model.rowCount() == 2  # img_010, img_011
    assert window.current_image_id() == ids[0]
    assert "2 of 12 shown" in panel.counts_label.text()
    assert set(FILTERS) >= {"All images", "Done", "Has proposals"}
    # Enter hands the keyboard back to the canvas: D is a shortcut again
    qtbot.keyClick(panel.search, Qt.Key.Key_Return)
    assert QApplication.focusWidget() is window.canvas.view()
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_D)
    assert panel.search.text() == "img_01" and window.current_image_id() == ids[10]  # the first one shown
    panel.search.setFocus()
    qtbot.keyClicks(panel.search, "x")
    qtbot.keyClick(panel.search, Qt.Key.Key_Escape)
    assert QApplication.focusWidget() is window.canvas.view() and panel.search.text() == "img_01x"
    # in the image list (not text) the one-key shortcuts work too
    panel.search.clear()
    panel.view.setFocus()
    qtbot.keyClick(panel.view, Qt.Key.Key_A)
    assert window.current_image_id() == ids[9]


def test_classes_add_rename_and_number_keys(
    qtbot: QtBot, backend: Backend, window: MainWindow, tmp_path: Path, monkeypatch
) -> None:
    from PySide6.QtWidgets import QInputDialog

    root = make_project(backend, tmp_path / "proj", 2, classes=("cat",))
    open_and_wait(qtbot, window, backend, root)
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("dog", True))
    qtbot.mouseClick(window.classes.add_button, Qt.MouseButton.LeftButton)
    names = [c.name for c in window.project.categories()]
    assert names == ["cat", "dog"]
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("puppy", True))
    qtbot.mouseClick(window.classes.rename_button, Qt.MouseButton.LeftButton)
    assert [c.name for c in window.project.categories()] == ["cat", "puppy"]
    cat, puppy = (c.id for c in window.project.categories())
    press(qtbot, window, Qt.Key.Key_1)
    assert window.canvas.category_id() == cat and window.classes.current_category_id() == cat
    press(qtbot, window, Qt.Key.Key_2)
    assert window.canvas.category_id() == puppy
    press(qtbot, window, Qt.Key.Key_9)  # no ninth class: nothing changes
    assert window.canvas.category_id() == puppy
    window.classes.recolor_category(puppy, (1, 2, 3))
    assert window.project.category(puppy).color == (1, 2, 3)


def test_mark_done_with_key_and_button(qtbot: QtBot, backend: Backend, window: MainWindow, tmp_path: Path) -> None:
    root = make_project(backend, tmp_path / "proj", 3)
    open_and_wait(qtbot, window, backend, root)
    image_id = window.current_image_id()
    press(qtbot, window, Qt.Key.Key_M)
    assert window.project.image(image_id).done
    assert window.images.model.state_of(image_id) is ImageState.DONE
    assert "1 / 3 images done" in window.status.done_label.text()
    button = window.actions_.tool_bar.widgetForAction(window.actions_[ActionId.MARK_DONE])
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert not window.project.image(image_id).done


def _add_proposals(project: Project, image_id: int, scores: list[float], *, plugin: str = "segmenter") -> list[int]:
    cat = project.categories()[0]
    version = project.add_model_version(
        ModelVersion(plugin=plugin, settings={}, categories=(cat.id,), checkpoint="models/x.safetensors"),
        activate=True,
    )
    stored = project.replace_proposals(
        image_id,
        plugin=plugin,
        proposals=[
            Annotation(
                image_id=image_id,
                category_id=cat.id,
                kind=Kind.BOX,
                box_xywh=(4 + 10 * i, 4, 8, 8),
                state=State.PROPOSED,
                model_version=version.id,
                score=s,
            )
            for i, s in enumerate(scores)
        ],
        uncertainty=0.5,
    )
    return [a.id for a in stored]


def test_proposals_accept_reject_and_undo(qtbot: QtBot, backend: Backend, window: MainWindow, tmp_path: Path) -> None:
    _, image_id = open_generated(qtbot, window, backend, tmp_path)
    ids = _add_proposals(window.project, image_id, [0.9, 0.8, 0.3])
    window.canvas.reload_annotations()
    window.images.model.refresh_image(image_id)
    assert window.images.model.state_of(image_id) is ImageState.PROPOSALS
    panel = window.proposals
    panel.set_threshold(0.5)
    assert "2 of 3 proposals shown" in panel.summary.text()
    # select one and reject it from the panel
    window.canvas.select([ids[1]])
    assert panel.reject_button.isEnabled()
    with qtbot.waitSignal(window.canvas.annotationsChanged, timeout=5000):
        qtbot.mouseClick(panel.reject_button, Qt.MouseButton.LeftButton)
    assert window.project.annotation(ids[1]).state is State.REJECTED
    # accept all shown: only the one above the threshold still pending
    with qtbot.waitSignal(window.canvas.annotationsChanged, timeout=5000):
        qtbot.mouseClick(panel.accept_all_button, Qt.MouseButton.LeftButton)
    states = [window.project.annotation(i).state for i in ids]
    assert states == [State.ACCEPTED, State.REJECTED, State.PROPOSED]
    assert window.status.saved_label.text().startswith("1 proposal accepted: ")
    # Ctrl+Z undoes the accept, then the reject
    press(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert window.project.annotation(ids[0]).state is State.PROPOSED
    press(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert window.project.annotation(ids[1]).state is State.PROPOSED
    press(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert window.project.annotation(ids[1]).state is State.REJECTED
    # reject all shown
    panel.set_threshold(0.0)
    qtbot.mouseClick(panel.reject_all_button, Qt.MouseButton.LeftButton)
    assert all(window.project.annotation(i).state is State.REJECTED for i in ids)
    # leaving the image logs the time spent reviewing its proposals (for the time-saved figure)
    assert not window.project.edit_log(action="review")
    window.step_image(1)
    reviews = window.project.edit_log(action="review")
    assert len(reviews) == 1 and reviews[0]["image_id"] == image_id and 0 <= reviews[0]["seconds"] <= 60


def test_tools_layers_and_zoom_actions(qtbot: QtBot, backend: Backend, window: MainWindow, tmp_path: Path) -> None:
    root = make_project(backend, tmp_path / "proj", 1)
    open_and_wait(qtbot, window, backend, root)
    for key, tool in (
        (Qt.Key.Key_B, "box"),
        (Qt.Key.Key_P, "polygon"),
        (Qt.Key.Key_R, "brush"),
        (Qt.Key.Key_E, "eraser"),
        (Qt.Key.Key_V, "select"),
    ):
        press(qtbot, window, key)
        assert window.canvas.tool() == tool
        assert window.actions_.tools[tool].isChecked()
        # the status bar says how the chosen tool is used
        assert window.status.currentMessage() == window.canvas.tool_hint() != ""
    press(qtbot, window, Qt.Key.Key_G)
    assert "right click removes" in window.status.currentMessage() and "Enter keeps" in window.status.currentMessage()
    window.actions_.layers["masks"].trigger()
    assert not window.canvas.layer_visible("masks")
    window.actions_.layers["masks"].trigger()
    assert window.canvas.layer_visible("masks")
    window.actions_.brush_size.setValue(33)
    assert window.canvas.brush_size() == 33
    press(qtbot, window, Qt.Key.Key_R)
    press(qtbot, window, Qt.Key.Key_BracketRight)  # the toolbar follows [ and ]
    assert window.actions_.brush_size.value() == window.canvas.brush_size() == 41
    press(qtbot, window, Qt.Key.Key_BracketLeft)
    assert window.actions_.brush_size.value() == window.canvas.brush_size() == 33
    from labeler.gui.actions import shortcuts_text

    assert "[ / ]" in shortcuts_text(window.actions_)
    window.actions_[ActionId.ACTUAL].trigger()
    assert window.canvas.view().transform().m11() == pytest.approx(1.0)
    window.actions_["fit"].trigger()


def test_layout_and_last_image_are_remembered(qtbot: QtBot, backend: Backend, tmp_path: Path) -> None:
    root = make_project(backend, tmp_path / "proj", 3)
    first = MainWindow(interactive=False)
    qtbot.addWidget(first)
    first.show()
    open_and_wait(qtbot, first, backend, root)
    first.resize(640, 480)  # the offscreen screen is 800 x 600
    first.step_image(1)
    wanted = first.current_image_id()
    first.training_panel.budget.setValue(42)
    first.close()
    second = MainWindow(interactive=False)
    qtbot.addWidget(second)
    second.show()
    open_and_wait(qtbot, second, backend, root)
    assert second.current_image_id() == wanted
    assert second.size().width() == 640
    assert second.training_panel.budget.value() == 42
    second.shutdown()
    second.set_project(None)


def test_screenshot_of_a_folder(qtbot: QtBot, tmp_path: Path) -> None:
    from PySide6.QtGui import QImage

    from labeler.gui.app import run_app

    # SQLite only: opening a folder of images makes a SQLite project there (a shared project is
    # made with 'labeler init URL'), so there is no PostgreSQL case.
    folder = tmp_path / "shots"
    write_images(folder, 3)
    out = tmp_path / "shot.png"
    assert run_app(path=str(folder), screenshot=str(out)) == 0
    image = QImage(str(out))
    assert not image.isNull() and image.width() > 600
    assert Project.is_project(folder)  # made a project without asking
    assert run_app(path=str(tmp_path / "missing"), screenshot=str(out)) == 2


def test_big_project_opens_fast_and_decodes_only_visible_thumbnails(
    qtbot: QtBot, backend: Backend, window: MainWindow, tmp_path: Path
) -> None:
    import time

    import cv2
    import numpy as np

    root = tmp_path / "big"
    root.mkdir()
    tile = np.full((8, 8, 3), 128, dtype=np.uint8)
    for i in range(3000):
        cv2.imwrite(str(root / f"f_{i:05d}.png"), tile)
    with backend.create(root) as project:
        project.add_folder(root)
    start = time.perf_counter()
    open_and_wait(qtbot, window, backend, root)
    assert time.perf_counter() - start < 5.0
    model = window.images.model
    assert model.rowCount() == 3000
    qtbot.waitUntil(lambda: model.thumbnail_count() > 0, timeout=10_000)
    model.wait_for_thumbnails()
    qtbot.wait(0)  # deliver the queued results (no fixed sleep: returns at once)
    visible = window.images.view.viewport().height() // 48 + 2
    assert 0 < model.thumbnail_count() <= visible + 10
    # scrolling to the end loads the rows shown there, not the ones in between
    window.images.view.scrollToBottom()
    qtbot.waitUntil(lambda: model.thumbnail_count() > visible, timeout=10_000)
    assert model.thumbnail_count() <= 2 * (visible + 10)


def test_drawing_on_the_canvas_updates_list_status_and_effort(
    qtbot: QtBot, backend: Backend, window: MainWindow, tmp_path: Path
) -> None:
    from gui_helpers import drag

    _, image_id = open_generated(qtbot, window, backend, tmp_path)
    press(qtbot, window, Qt.Key.Key_2)  # class "dog"
    press(qtbot, window, Qt.Key.Key_B)  # box tool
    with qtbot.waitSignal(window.canvas.annotationsChanged, timeout=5000):
        drag(window.canvas, [(5, 5), (20, 15), (40, 30)])
    anns = window.project.annotations(image_id)
    assert len(anns) == 1 and anns[0].kind is Kind.BOX
    assert anns[0].category_id == window.project.category_by_name("dog").id
    assert window.images.model.state_of(image_id) is ImageState.LABELLED
    draws = window.project.edit_log(action="draw")
    assert len(draws) == 1 and draws[0]["kind"] == "box"  # the time it took, for the effort figure
    press(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert not window.project.annotations(image_id)
    assert window.images.model.state_of(image_id) is ImageState.UNLABELLED


def test_shortcuts_are_listed_for_the_user(qtbot: QtBot, window: MainWindow) -> None:
    from labeler.gui.actions import shortcuts_text

    text = shortcuts_text(window.actions_)
    for key, what in (
        ("D", "Next image"),
        ("A", "Previous image"),
        ("N", "Next not done"),
        ("M", "Mark done"),
        ("Ctrl+Z", "Undo"),
        ("B", "Box"),
        ("1 … 9", "pick the class"),
        ("Ctrl+D", "Duplicate selected"),
    ):
        assert f"<b>{key}" in text and what in text


FAKE_CHILD = r"""
import json, os, signal, sys, time
marker = sys.argv[1]
def stop(*_):
    open(marker, "w").write("terminated")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
if sys.argv[2] == "train":
    print(json.dumps({"v": 1, "job": "train", "event": "start", "plugin": "fake", "train_images": 5,
                      "validation_images": 1}), flush=True)
else:
    print(json.dumps({"v": 1, "job": "auto-label", "event": "start", "version": 1, "plugin": "fake",
                      "total": 5}), flush=True)
time.sleep(120)
"""


def test_switching_project_or_closing_stops_child_processes(
    qtbot: QtBot, backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Training and "auto-label all" children of the open project are stopped (after asking) when
    another project is opened or the window closes: terminated, waited for, never orphaned."""
    import os
    import sys

    import labeler.gui.controllers.workers

    markers: list[Path] = []

    def fake_command(args):
        markers.append(tmp_path / f"stopped-{len(markers)}-{args[0]}")
        return sys.executable, ["-c", FAKE_CHILD, str(markers[-1]), args[0]]

    monkeypatch.setattr(labeler.gui.controllers.workers, "labeler_command", fake_command)
    answers: list[QMessageBox.StandardButton] = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: answers.pop(0))
    make_project(backend, tmp_path / "a", 2)
    make_project(backend, tmp_path / "b", 2)
    win = MainWindow(interactive=True)
    qtbot.addWidget(win)
    open_and_wait(qtbot, win, backend, tmp_path / "a")

    def start_both() -> list[int]:
        pids: list[int] = []
        assert win.project is not None
        with qtbot.waitSignal(win.trainer.progress, timeout=20_000):
            win.trainer.start(child_project(win.project), "fake")
        pids.append(win.trainer.job.process.processId())
        with qtbot.waitSignal(win.autolabeler.batchProgress, timeout=20_000):
            win.autolabeler.label_all(child_project(win.project), "fake")
        pids.append(win.autolabeler.job.process.processId())
        assert win.background_jobs_running()
        return pids

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    pids = start_both()
    answers.append(QMessageBox.StandardButton.No)
    assert not backend.open_in(win, tmp_path / "b")  # the user keeps the runs going
    assert win.project is not None and win.project.root == (tmp_path / "a").resolve()
    assert win.background_jobs_running() and not any(gone(p) for p in pids)
    answers.append(QMessageBox.StandardButton.Yes)
    with qtbot.waitSignal(win.canvas.imageShown, timeout=10_000):
        assert backend.open_in(win, tmp_path / "b")
    assert not win.background_jobs_running()
    assert all(gone(p) for p in pids)  # terminated and reaped
    assert [m.read_text() for m in markers] == ["terminated", "terminated"]  # SIGTERM, a clean stop
    assert win.project.root == (tmp_path / "b").resolve()
    # Closing the window: same question, same clean stop.
    pids = start_both()
    answers.append(QMessageBox.StandardButton.No)
    assert not win.close() and win.background_jobs_running()
    answers.append(QMessageBox.StandardButton.Yes)
    assert win.close()
    assert all(gone(p) for p in pids) and not win.background_jobs_running()
    assert all(m.read_text() == "terminated" for m in markers)


def test_next_most_uncertain_walks_down_the_numbers_it_shows(
    qtbot: QtBot, backend: Backend, window: MainWindow, tmp_path: Path
) -> None:
    root = make_project(backend, tmp_path / "proj", 5)
    open_and_wait(qtbot, window, backend, root)
    ids = [r.id for r in window.project.images()]
    for image_id, value in ((ids[1], 0.9), (ids[3], 0.5), (ids[4], 0.95)):
        window.project.replace_proposals(image_id, plugin="test", proposals=[], uncertainty=value)
    walked, shown = [], []
    for _ in range(4):
        press(qtbot, window, Qt.Key.Key_U)
        walked.append(window.current_image_id())
        shown.append(window.statusBar().currentMessage())
    assert walked == [ids[4], ids[1], ids[3], ids[4]]  # down the order, then round again; no ping-pong
    assert [m.split(" (")[0] for m in shown[:3]] == [
        f"Next most uncertain: uncertainty {v}" for v in ("0.95", "0.90", "0.50")
    ]
    model = window.images.model
    tip = model.data(model.index(model.row_of(ids[1]), 0), Qt.ItemDataRole.ToolTipRole)
    assert "uncertainty 0.90" in tip


def test_proposals_say_which_plugin_made_them_and_one_plugins_can_be_shown(
    qtbot: QtBot, backend: Backend, window: MainWindow, tmp_path: Path
) -> None:
    _, image_id = open_generated(qtbot, window, backend, tmp_path)
    masks = _add_proposals(window.project, image_id, [0.9], plugin="segmenter")
    boxes = _add_proposals(window.project, image_id, [0.8, 0.7], plugin="localizer")
    window.canvas.reload_annotations()
    panel = window.proposals
    panel.set_threshold(0.5)
    assert "3 of 3 proposals shown" in panel.summary.text()
    assert "2 by localizer, 1 by segmenter" in panel.summary.text()
    assert window.canvas._items[boxes[0]].toolTip().startswith("proposal by localizer (version #")
    # choose "localizer" with the keyboard: All plugins, localizer, segmenter
    panel.plugin_filter.setFocus()
    qtbot.keyClick(panel.plugin_filter, Qt.Key.Key_Down)
    assert panel.plugin_filter.currentText() == "localizer"
    assert not window.canvas._items[masks[0]].isVisible() and window.canvas._items[boxes[0]].isVisible()
    assert "2 of 3 proposals shown" in panel.summary.text() and "localizer only" in panel.summary.text()
    with qtbot.waitSignal(window.canvas.annotationsChanged, timeout=5000):
        qtbot.mouseClick(panel.accept_all_button, Qt.MouseButton.LeftButton)
    assert [window.project.annotation(i).state for i in boxes + masks] == [
        State.ACCEPTED,
        State.ACCEPTED,
        State.PROPOSED,
    ]


def test_a_corrupt_image_says_so_on_the_canvas_and_cannot_be_marked_done(
    qtbot: QtBot, backend: Backend, window: MainWindow, tmp_path: Path
) -> None:
    assert "Open a project" in window.canvas.view().notice()  # the empty window says what to do
    root = make_project(backend, tmp_path / "proj", 3)
    open_and_wait(qtbot, window, backend, root)
    assert window.canvas.view().notice() == ""
    second = window.project.images()[1]
    (root / second.path).write_bytes(b"\x89PNG\r\n\x1a\n" + b"broken" * 10)
    with qtbot.waitSignal(window.canvas.errorOccurred, timeout=10_000):
        press(qtbot, window, Qt.Key.Key_D)
    assert window.current_image_id() == second.id
    assert "cannot be shown" in window.canvas.view().notice()
    press(qtbot, window, Qt.Key.Key_M)
    assert not window.project.image(second.id).done and not window.actions_[ActionId.MARK_DONE].isChecked()
    assert window.statusBar().currentMessage().startswith("Cannot mark done")
    with qtbot.waitSignal(window.canvas.imageShown, timeout=10_000):
        press(qtbot, window, Qt.Key.Key_D)
    assert window.canvas.view().notice() == ""
    press(qtbot, window, Qt.Key.Key_M)
    assert window.project.image(window.current_image_id()).done


def test_image_names_sort_naturally_in_the_list_and_the_keys_follow(
    qtbot: QtBot, backend: Backend, window: MainWindow, tmp_path: Path
) -> None:
    root = tmp_path / "proj"
    paths = write_images(root / "raw", 4)
    for path, name in zip(paths, ["10.png", "2.png", "1.png", "0.png"], strict=True):
        path.rename(root / name)
    with backend.create(root) as project:
        project.add_images([root / "10.png", root / "2.png", root / "1.png", root / "0.png"])  # ids in that order
        project.add_category("cat")
    open_and_wait(qtbot, window, backend, root)
    model = window.images.model
    assert [model.data(model.index(r, 0)) for r in range(model.rowCount())] == ["0.png", "1.png", "2.png", "10.png"]
    seen = [window.project.image(window.current_image_id()).path]
    for _ in range(3):
        press(qtbot, window, Qt.Key.Key_D)
        seen.append(window.project.image(window.current_image_id()).path)
    assert seen == ["0.png", "1.png", "2.png", "10.png"]


def test_the_status_bar_shows_the_zoom_and_says_plainly_what_proposals_saved(
    qtbot: QtBot, backend: Backend, window: MainWindow, tmp_path: Path
) -> None:
    from labeler.core.effort import Effort
    from labeler.gui.status import effort_text

    root = make_project(backend, tmp_path / "proj", 2)
    open_and_wait(qtbot, window, backend, root)
    fitted = window.status.zoom_label.text()
    assert fitted.startswith("zoom ") and fitted.endswith(" %")
    press(qtbot, window, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert window.status.zoom_label.text() == "zoom 100 %"
    effort = Effort(draw_seconds={"box": 7.0}, accepted={"box": 2}, review_seconds=25.0, saved_seconds=-11.0)
    assert effort_text(effort) == "2 proposals accepted: reviewing took ~11 s longer than drawing them would have"


def _hover(view, x: float, y: float) -> None:
    """The pointer moving over image pixel (x, y), with no button down (a plain mouse-move event:
    QTest.mouseMove is dropped after another test's QApplication window went)."""
    from PySide6.QtCore import QEvent, QPointF
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    local = QPointF(view.mapFromScene(QPointF(x, y)))
    event = QMouseEvent(
        QEvent.Type.MouseMove,
        local,
        QPointF(view.viewport().mapToGlobal(local.toPoint())),
        Qt.MouseButton.NoButton,
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(view.viewport(), event)


def test_y_and_x_act_on_the_proposal_under_the_pointer_or_the_only_one(
    qtbot: QtBot, backend: Backend, window: MainWindow, tmp_path: Path
) -> None:
    _, image_id = open_generated(qtbot, window, backend, tmp_path)
    ids = _add_proposals(window.project, image_id, [0.9, 0.8])  # boxes at x 4..12 and 14..22
    window.canvas.reload_annotations()
    assert window.canvas.selected_ids() == []
    view = window.canvas.view()
    _hover(view, 18, 8)
    press(qtbot, window, Qt.Key.Key_Y)
    assert [window.project.annotation(i).state for i in ids] == [State.PROPOSED, State.ACCEPTED]
    _hover(view, 50, 50)  # over no proposal: the only one left
    press(qtbot, window, Qt.Key.Key_X)
    assert [window.project.annotation(i).state for i in ids] == [State.REJECTED, State.ACCEPTED]


def test_the_first_label_without_a_class_asks_for_its_name(
    qtbot: QtBot, backend: Backend, window: MainWindow, tmp_path: Path, monkeypatch
) -> None:
    from gui_helpers import drag
    from PySide6.QtWidgets import QInputDialog

    asked: list[str] = []
    monkeypatch.setattr(QInputDialog, "getText", lambda _p, title, *a, **k: (asked.append(title), ("cell", True))[1])
    root = make_project(backend, tmp_path / "proj", 2, classes=())
    open_and_wait(qtbot, window, backend, root)
    image_id = window.current_image_id()
    press(qtbot, window, Qt.Key.Key_B)
    drag(window.canvas, [(5, 5), (20, 15), (40, 30)])
    qtbot.waitUntil(lambda: bool(asked), timeout=5000)
    assert [c.name for c in window.project.categories()] == ["cell"]
    assert "draw the label now" in window.statusBar().currentMessage()
    with qtbot.waitSignal(window.canvas.annotationsChanged, timeout=5000):
        drag(window.canvas, [(5, 5), (20, 15), (40, 30)])
    anns = window.project.annotations(image_id)
    assert len(anns) == 1 and anns[0].category_id == window.project.category_by_name("cell").id


def right_click(view, at) -> None:
    """A right click as the window system delivers it: the press, then the context-menu event
    (the offscreen platform makes no context-menu event of its own)."""
    from PySide6.QtGui import QContextMenuEvent
    from PySide6.QtTest import QTest

    QTest.mouseClick(view.viewport(), Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier, at)
    QApplication.sendEvent(
        view.viewport(), QContextMenuEvent(QContextMenuEvent.Reason.Mouse, at, view.viewport().mapToGlobal(at))
    )


@pytest.mark.qt_log_ignore(
    "This plugin does not support propagateSizeHints",
    "This plugin does not support raise",
    "This plugin does not support grabbing the keyboard",
)  # the offscreen platform, on popups
def test_object_list_and_right_click_menu(
    qtbot: QtBot, backend: Backend, window: MainWindow, tmp_path: Path, monkeypatch
) -> None:
    _, image_id = open_generated(qtbot, window, backend, tmp_path)
    cat = window.project.categories()[0]
    tiny = window.project.add_annotation(
        Annotation(image_id=image_id, category_id=cat.id, kind=Kind.BOX, box_xywh=(50.0, 50.0, 1.0, 1.0))
    )
    ids = _add_proposals(window.project, image_id, [0.9])
    window.canvas.reload_annotations()
    objects = window.objects
    assert objects.ids() == [tiny.id, ids[0]]
    assert [objects.table.item(0, c).text() for c in range(1, 5)] == ["cat", "box", "you", ""]
    assert objects.table.item(1, 3).text() == "proposal by segmenter" and objects.table.item(1, 4).text() == "0.90"
    # clicking a row selects the label and zooms to it, however small
    rect = objects.table.visualItemRect(objects.table.item(0, 1))
    qtbot.mouseClick(objects.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert window.canvas.selected_ids() == [tiny.id]
    assert window.canvas.view().scale_factor() >= 24
    # untick "Shown" to hide it
    objects.table.item(0, 0).setCheckState(Qt.CheckState.Unchecked)
    assert not window.canvas.annotation_items()[tiny.id].isVisible()
    window.canvas.fit_to_window()
    # right click on the proposal: accept it, change its class
    view = window.canvas.view()
    from PySide6.QtCore import QPointF

    at = view.mapFromScene(QPointF(8, 8))
    right_click(view, at)
    menu = window.canvas.last_menu
    assert menu is not None and window.canvas.selected_ids() == [ids[0]]
    texts = [a.text() for a in menu.actions()]
    assert "Change class" in texts and "Accept proposal (Y)" in texts and "Delete (Del)" in texts
    next(a for a in menu.actions() if a.text() == "Accept proposal (Y)").trigger()
    assert window.project.annotation(ids[0]).state is State.ACCEPTED
    menu.close()
    right_click(view, at)
    change = next(a for a in window.canvas.last_menu.actions() if a.text() == "Change class").menu()
    next(a for a in change.actions() if a.text() == "dog").trigger()
    assert window.project.annotation(ids[0]).category_id == window.project.category_by_name("dog").id
    window.canvas.last_menu.close()
    # double-click a row to change its class
    from PySide6.QtWidgets import QInputDialog

    monkeypatch.setattr(QInputDialog, "getItem", lambda *a, **k: ("cat", True))
    rect = objects.table.visualItemRect(objects.table.item(1, 1))
    qtbot.mouseClick(
        objects.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center()
    )  # a double click's first half
    qtbot.mouseDClick(objects.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert window.project.annotation(ids[0]).category_id == cat.id
    # Delete from the panel
    qtbot.mouseClick(objects.delete_button, Qt.MouseButton.LeftButton)
    assert [a.id for a in window.project.annotations(image_id)] == [tiny.id]


def test_rescan_and_add_images_bring_in_new_files_and_keep_labels(
    qtbot: QtBot, backend: Backend, window: MainWindow, tmp_path: Path, monkeypatch
) -> None:
    from PySide6.QtWidgets import QFileDialog

    root = make_project(backend, tmp_path / "proj", 2)
    with backend.open(root) as project:
        first = project.images()[0]
        project.add_annotation(Annotation(image_id=first.id, category_id=1, kind=Kind.BOX, box_xywh=(1, 1, 9, 9)))
    open_and_wait(qtbot, window, backend, root)
    write_images(root / "new", 3, seed=5)
    qtbot.keyClick(window.canvas.view(), Qt.Key.Key_F5)  # Rescan folder
    assert window.project.image_count() == 5 and window.images.model.rowCount() == 5
    assert "3 new images added" in window.statusBar().currentMessage()
    outside = write_images(tmp_path / "elsewhere", 1, seed=9)
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", lambda *a, **k: ([str(outside[0])], ""))
    window.actions_["add_images"].trigger()
    assert window.project.image_count() == 6 and window.images.model.rowCount() == 6
    assert len(window.project.annotations(first.id)) == 1


def test_a_small_window_keeps_the_canvas_usable_and_names_elide_in_the_middle(
    qtbot: QtBot, backend: Backend, window: MainWindow, tmp_path: Path
) -> None:
    root = tmp_path / "proj"
    for path in write_images(root / "raw", 2):
        path.rename(root / f"BloodImage_{path.stem}_with_a_long_name.png")
    with backend.create(root) as project:
        project.add_folder(root)
        project.add_category("cell")
    open_and_wait(qtbot, window, backend, root)
    window.resize(800, 500)
    qtbot.waitUntil(lambda: window.width() <= 1000)
    assert window.canvas.width() >= MainWindow.MIN_CANVAS[0] and window.canvas.height() >= MainWindow.MIN_CANVAS[1]
    assert window.images.view.textElideMode() is Qt.TextElideMode.ElideMiddle
    assert window.images.width() >= 160


def test_mask_tags_sit_inside_their_regions_proposals_are_hatched_and_opacity_is_a_slider(
    qtbot: QtBot, backend: Backend, window: MainWindow, tmp_path: Path
) -> None:
    import numpy as np
    from PySide6.QtCore import QPointF

    from labeler.core.geometry import encode_mask

    root = make_project(backend, tmp_path / "proj", 1)
    open_and_wait(qtbot, window, backend, root)
    image_id = window.current_image_id()
    cell, membrane = window.project.categories()
    left = np.zeros((64, 64), bool)  # "cell": a blob in the corner and a big one; "membrane": the rest
    left[:10, :10] = True
    left[30:60, 30:60] = True
    window.project.add_annotation(
        Annotation(image_id=image_id, category_id=cell.id, kind=Kind.MASK, rle=encode_mask(left))
    )
    window.project.add_annotation(
        Annotation(image_id=image_id, category_id=membrane.id, kind=Kind.MASK, rle=encode_mask(~left))
    )
    window.canvas.reload_annotations()
    items = list(window.canvas.annotation_items().values())
    anchors = [item.mapToScene(item.tag.pos()) for item in items]
    for item, anchor in zip(items, anchors, strict=True):  # each tag inside its own region, not both at (0, 0)
        assert item.hit(QPointF(anchor.x() + 0.5, anchor.y() + 0.5), 0)
    assert anchors[0] != anchors[1]
    slider = window.actions_.mask_opacity
    slider.setFocus()
    qtbot.keyClick(slider, Qt.Key.Key_PageDown)  # 10 % less
    assert all(item.opacity() == pytest.approx(0.9) for item in items)
    assert all(item.tag.isVisible() for item in items)


def test_deleting_a_class_drops_its_labels_and_the_undo_history(
    qtbot: QtBot, backend: Backend, window: MainWindow, tmp_path: Path
) -> None:
    """The undo history held a label of the deleted class; undoing into it would store a label of
    a class that no longer exists, so the history goes with the class."""
    from labeler.gui.controllers import undo

    root = make_project(backend, tmp_path / "proj", 2)
    open_and_wait(qtbot, window, backend, root)
    assert window.project is not None
    image_id = window.current_image_id()
    assert image_id is not None
    cat = window.project.category_by_name("cat")
    assert cat is not None
    box = Annotation(image_id=image_id, category_id=cat.id, kind=Kind.BOX, box_xywh=(4, 4, 20, 20))
    window.undo_stack.push(undo.add_annotations(window.project, [box], notify=lambda _i: None))
    assert window.undo_stack.canUndo()
    assert window.classes.delete_category(cat.id)
    assert window.project.annotations(image_id) == []
    assert [c.name for c in window.project.categories()] == ["dog"]
    assert not window.undo_stack.canUndo()

"""Opening a project reads its image list off the UI thread: a 20 ms timer keeps ticking."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

pytest.importorskip("pytestqt")

from backends import Backend
from gui_support import make_project
from PySide6.QtCore import QTimer

import labeler.gui.main_window as main_window
from labeler.core.image_index import ImageIndex
from labeler.gui.main_window import MainWindow


# A folder of images (no project yet) is SQLite only: opening one makes a SQLite project there.
@pytest.mark.parametrize(
    ("backend", "what"), [("sqlite", "project"), ("postgresql", "project"), ("sqlite", "folder")], indirect=["backend"]
)
def test_the_image_list_is_read_on_a_worker_while_a_20_ms_timer_ticks(
    qtbot: QtBot, backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, what: str
) -> None:
    root = make_project(backend, tmp_path / "p", 3)
    if what == "folder":  # images only: the project is made on the worker too
        for name in ("labeler.db", "labeler.db-wal", "labeler.db-shm"):
            (root / name).unlink(missing_ok=True)
    inside = threading.Event()  # the worker is reading the list
    go_on = threading.Event()  # the timer ticked meanwhile
    threads: list[threading.Thread] = []
    real_load = ImageIndex.load

    def gated_load(project, **kwargs):
        threads.append(threading.current_thread())
        inside.set()
        go_on.wait(20)
        return real_load(project, **kwargs)

    monkeypatch.setattr(main_window.ImageIndex, "load", gated_load)
    win = MainWindow(interactive=False)
    qtbot.addWidget(win)
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    try:
        with qtbot.waitSignal(win.canvas.imageShown, timeout=20_000):
            assert backend.open_in(win, root)
            qtbot.waitUntil(inside.is_set, timeout=20_000)
            assert win.images.model.rowCount() == 0  # not shown before it is read
            n_before = len(ticks)
            qtbot.waitUntil(lambda: len(ticks) > n_before + 3, timeout=5_000)  # the timer keeps firing
            go_on.set()
    finally:
        go_on.set()
        timer.stop()
    assert threads and threads[0] is not threading.main_thread()
    assert win.images.model.rowCount() == 3 and win.images.model.total() == 3
    win.shutdown()


def test_a_second_open_wins_over_a_slower_first(
    qtbot: QtBot, backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = make_project(backend, tmp_path / "a", 2)
    second = make_project(backend, tmp_path / "b", 3)
    release = threading.Event()
    real_load = ImageIndex.load

    def slow_first(project, **kwargs):
        if project.root == first.resolve():
            release.wait(20)
        return real_load(project, **kwargs)

    monkeypatch.setattr(main_window.ImageIndex, "load", slow_first)
    win = MainWindow(interactive=False)
    qtbot.addWidget(win)
    assert backend.open_in(win, first)
    with qtbot.waitSignal(win.canvas.imageShown, timeout=20_000):
        assert backend.open_in(win, second)
    release.set()
    qtbot.wait(300)  # the first one's late result arrives and is dropped
    assert win.project is not None and win.project.root == second.resolve()
    assert win.images.model.total() == 3
    win.shutdown()

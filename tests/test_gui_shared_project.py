"""The window on a project in PostgreSQL: opened by URL (the command line, Open recent, File ▸
Open shared project), its image folder remembered, and its children given the project without
a password on their command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pytestqt")

from pytestqt.qtbot import QtBot

from labeler.core.location import child_project
from labeler.core.store import Project
from labeler.gui.main_window import MainWindow

CHILD = r"""
import json, os, sys
from labeler.core.store import Project
args = sys.argv[1:]
root = args[args.index("--image-root") + 1]
with Project.open(args[1], image_root=root) as project:
    count = project.image_count()
print(json.dumps({"v": 1, "job": "train", "event": "start", "plugin": "fake", "train_images": count,
                  "validation_images": 0}), flush=True)
open(os.environ["SEEN"], "w").write(json.dumps({"args": args, "password": os.environ.get("PGPASSWORD")}))
"""


def shared_project(pg_url: str, folder: Path) -> str:
    """A PostgreSQL project of three images under ``folder``; its URL with a password (which the
    test server, trusting local users, ignores)."""
    folder.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((40, 60, 3), 60 * i, np.uint8)).save(folder / f"im{i}.png")
    with Project.create(pg_url, image_root=folder) as project:
        project.add_folder(folder)
        project.add_category("cell")
    user, rest = pg_url.removeprefix("postgresql://").split("@", 1)
    return f"postgresql://{user}:s3cret@{rest}"


def test_the_window_opens_a_shared_project_and_remembers_its_image_folder(
    qtbot: QtBot, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import labeler.gui.controllers.workers

    url = shared_project(pg_url, tmp_path / "img")
    win = MainWindow(interactive=False)
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.canvas.imageShown, timeout=20_000):
        assert win.open_path(url, image_root=tmp_path / "img")
    assert win.project is not None and win.project.url is not None
    assert win.images.model.total() == 3
    assert pg_url.rsplit("/", 1)[1] in win.windowTitle()

    # its children open the same project: URL without the password, the image root, the password
    # in their environment only
    seen = tmp_path / "seen.json"
    monkeypatch.setenv("SEEN", str(seen))
    monkeypatch.setattr(
        labeler.gui.controllers.workers, "labeler_command", lambda args: (sys.executable, ["-c", CHILD, *args])
    )
    with qtbot.waitSignal(win.trainer.progress, timeout=30_000) as started:
        win.trainer.start(child_project(win.project), "fake")
    assert started.args[0].train_images == 3
    qtbot.waitUntil(seen.exists, timeout=10_000)
    child = json.loads(seen.read_text())
    assert child["args"][1] == pg_url and "s3cret" not in " ".join(child["args"])
    assert child["password"] == "s3cret"

    # remembered without the password: Open recent and the image folder for the next time
    assert win.settings.recent_projects()[0] == pg_url
    assert win.settings.image_root(pg_url) == str((tmp_path / "img").resolve())
    win.shutdown()
    win.set_project(None)
    with qtbot.waitSignal(win.canvas.imageShown, timeout=20_000):
        assert win.open_path(pg_url)  # from Open recent: no image folder given
    assert win.project is not None and win.images.model.total() == 3
    win.set_project(None)
    settings_file = Path(win.settings.qsettings.fileName())
    assert settings_file.is_file() and "s3cret" not in settings_file.read_text()


def test_a_shared_project_without_an_image_folder_or_server_is_a_clear_error(
    qtbot: QtBot, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors: list[str] = []
    win = MainWindow(interactive=False)
    qtbot.addWidget(win)
    monkeypatch.setattr(win, "_error", lambda title, text: errors.append(text))
    assert not win.open_path("postgresql://ann:s3cret@127.0.0.1:1/nowhere")
    assert errors == ["postgresql://ann:***@127.0.0.1:1/nowhere: a shared project needs this machine's image folder"]
    (tmp_path / "img").mkdir()
    assert win.open_path("postgresql://ann:s3cret@127.0.0.1:1/nowhere", image_root=tmp_path / "img")
    qtbot.waitUntil(lambda: len(errors) == 2, timeout=20_000)  # the connection fails on the worker
    assert "s3cret" not in errors[1] and "127.0.0.1" in errors[1]
    assert win.project is None


def test_the_shared_project_dialog_opens_only_a_database_url_with_an_existing_folder(
    qtbot: QtBot, tmp_path: Path
) -> None:
    from PySide6.QtWidgets import QDialogButtonBox

    from labeler.gui.dialogs.shared_project import SharedProjectDialog

    dialog = SharedProjectDialog(None, "", "")
    qtbot.addWidget(dialog)
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Open)
    assert not ok.isEnabled() and "postgresql://" in dialog.problem.text()
    dialog.url.setText("postgresql://db.lab/cells")
    assert not ok.isEnabled() and "image folder" in dialog.problem.text()
    dialog.folder.edit.setText(str(tmp_path / "missing"))
    assert not ok.isEnabled()
    dialog.folder.edit.setText(str(tmp_path))
    assert ok.isEnabled() and dialog.problem.text() == ""
    assert dialog.chosen() == ("postgresql://db.lab/cells", str(tmp_path))


def test_the_window_shows_what_another_desktop_changes_and_who_has_which_image_open(
    qtbot: QtBot, pg_url: str, tmp_path: Path
) -> None:
    from labeler.core.annotation import Annotation, Kind, State

    shared_project(pg_url, tmp_path / "img")
    win = MainWindow(interactive=False)
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.canvas.imageShown, timeout=20_000):
        assert win.open_path(pg_url, image_root=tmp_path / "img")
    shown = win.current_image_id()
    assert shown is not None and win.canvas.annotation_items() == {}
    qtbot.waitUntil(win.live.is_listening, timeout=10_000)
    other_image = next(i for i in (1, 2, 3) if i != shown)
    with Project.open(pg_url, image_root=tmp_path / "img") as colleague:  # another desktop
        colleague.set_presence("colleague-window", other_image)
        added = colleague.add_annotation(
            Annotation(image_id=shown, category_id=1, kind=Kind.BOX, box_xywh=(2, 2, 10, 10), state=State.ACCEPTED)
        )
        # within seconds, without polling the project: the box on the canvas, the list's state and mark
        qtbot.waitUntil(lambda: added.id in win.canvas.annotation_items(), timeout=10_000)
        assert "changed this image" in win.statusBar().currentMessage()
        row = win.images.model.row_of(other_image)
        assert row is not None
        qtbot.waitUntil(lambda: "open by" in str(win.images.model.data(win.images.model.index(row))), timeout=10_000)
        colleague.clear_presence("colleague-window")
        qtbot.waitUntil(
            lambda: "open by" not in str(win.images.model.data(win.images.model.index(row))), timeout=10_000
        )
        # this window's own presence is seen by the colleague
        assert colleague.others_present("colleague-window") == {shown: (colleague.author,)}
    win.shutdown()
    win.set_project(None)
    assert not win.live.is_listening()

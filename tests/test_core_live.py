"""Live changes on a shared project (labeler.core.live) and who has which image open, on a real
PostgreSQL server (and presence on SQLite too)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from labeler.core.annotation import Annotation, Kind, State
from labeler.core.live import Change, listener_for, parse_change
from labeler.core.store import Project


def images(folder: Path, n: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"im{i}.png"
        Image.fromarray(np.full((20, 30, 3), 40 * i, np.uint8)).save(path)
        paths.append(path)
    return paths


def box(image_id: int) -> Annotation:
    return Annotation(image_id=image_id, category_id=1, kind=Kind.BOX, box_xywh=(1, 1, 5, 5), state=State.ACCEPTED)


def test_a_listener_hears_what_another_connection_changes_image_by_image(pg_url: str, tmp_path: Path) -> None:
    with _made(pg_url, tmp_path) as mine:
        listener = listener_for(mine)
        assert listener is not None
        try:
            assert listener.wait(0.2) == []  # nothing happened yet
            with Project.open(pg_url, image_root=tmp_path / "img") as theirs:
                who, writer = theirs.author, theirs.connection_id
                theirs.add_annotation(box(1))
                with theirs.transaction():  # many rows of one image in one transaction: one announcement
                    for _ in range(5):
                        theirs.add_annotation(box(2))
                theirs.set_done(3)
                theirs.set_presence("their-window", 2)
            heard: list[Change] = []
            for _ in range(20):
                heard += listener.wait(2.0)
                if len(heard) >= 4:
                    break
            assert heard == [
                Change("annotations", 1, who, writer),
                Change("annotations", 2, who, writer),
                Change("images", 3, who, writer),
                Change("presence", 2, who, writer),
            ]
            mine.add_annotation(box(3))  # one's own changes are announced too, named by their writer
            assert listener.wait(5.0) == [Change("annotations", 3, mine.author, mine.connection_id)]
        finally:
            listener.close()


def _made(pg_url: str, tmp_path: Path) -> Project:
    images(tmp_path / "img")
    project = Project.create(pg_url, image_root=tmp_path / "img")
    project.add_folder(tmp_path / "img")
    project.add_category("cell")
    return project


def test_who_has_which_image_open_expires_and_clears(make_project: Callable[[Path], Project], tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    project.add_images(images(tmp_path / "p"))
    project.set_presence("me", 1)
    assert project.others_present("me") == {}  # one's own window is not listed
    project.set_presence("bob-window", 2)
    project.set_presence("eve-window", 2)
    project.set_presence("idle-window", None)
    assert project.others_present("me") == {2: (project.author,)}
    project.set_presence("bob-window", 3)  # moved on to another image
    assert set(project.others_present("me")) == {2, 3}
    project.clear_presence("eve-window")
    project.set_presence("crashed-window", 1, ttl=-1.0)  # a record nobody renewed
    assert project.others_present("me") == {3: (project.author,)}


def test_a_sqlite_project_has_no_listener_and_odd_payloads_are_ignored(tmp_path: Path) -> None:
    with Project.create(tmp_path / "p") as project:
        assert listener_for(project) is None and project.connection_id is None
    assert parse_change("not json") is None and parse_change('{"image_id": 1}') is None
    assert parse_change('{"table": "images", "image_id": null, "author": "ann", "writer": 7}') == Change(
        "images", None, "ann", 7
    )

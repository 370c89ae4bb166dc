"""Rights on a team's project (``labeler access``), enforced by PostgreSQL, with real database users."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from itertools import count
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labeler.cli import main
from labeler.core.annotation import Annotation, Kind, State
from labeler.core.store import AccessError, ModelVersion, Project

_users = count(1)


def write_images(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((8, 10, 3), i, dtype=np.uint8)).save(folder / f"{i:03d}.png")


@pytest.fixture
def make_user(pg_server) -> Callable[[str], str]:
    """``make_user(name)``: a new LOGIN role on the test server (trust authentication, no password);
    returns its name, unique over the session."""
    import psycopg

    def make(name: str) -> str:
        user = f"{name}{next(_users)}"
        with psycopg.connect(pg_server.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE ROLE "{user}" LOGIN')
        return user

    return make


def as_user(url: str, user: str) -> str:
    """``url`` (the admin's, ``postgresql://admin@host:port/db``) for another database user."""
    rest = url.split("@", 1)[1]
    return f"postgresql://{user}@{rest}"


@pytest.fixture
def team(pg_url: str, tmp_path: Path, make_user: Callable[[str], str]) -> dict[str, str]:
    """A project with two images, a category, a proposal and a model version, and three users
    granted owner, annotator and reviewer through the CLI; returns their URLs by right."""
    write_images(tmp_path / "img", 2)
    assert main(["init", pg_url, "--images", str(tmp_path / "img"), "--classes", "cell,nucleus"]) == 0
    with Project.open(pg_url, image_root=tmp_path / "img") as p:
        version = p.add_model_version(ModelVersion("segmenter", {}, (1,), "models/x.safetensors"))
        p.add_annotation(
            Annotation(
                image_id=1,
                category_id=1,
                kind=Kind.BOX,
                box_xywh=(1, 1, 3, 3),
                state=State.PROPOSED,
                model_version=version.id,
                score=0.5,
            )
        )
    urls = {"admin": pg_url}
    for right in ("owner", "annotator", "reviewer"):
        user = make_user(right[:3])
        assert main(["access", pg_url, "grant", user, right, "--image-root", str(tmp_path / "img")]) == 0
        urls[right] = as_user(pg_url, user)
    return urls


def open_as(urls: dict[str, str], right: str, root: Path) -> Project:
    return Project.open(urls[right], image_root=root / "img")


def box(image_id: int = 1) -> Annotation:
    return Annotation(image_id=image_id, category_id=1, kind=Kind.BOX, box_xywh=(2, 2, 4, 4), state=State.ACCEPTED)


def test_access_lists_who_holds_which_right(
    team: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["access", team["admin"], "--image-root", str(tmp_path / "img")]) == 0
    lines = capsys.readouterr().out.splitlines()
    rights = {line.split()[1]: line.split()[0] for line in lines}
    for right in ("owner", "annotator", "reviewer"):
        assert rights[team[right].split("//")[1].split("@")[0]] == right
    assert rights["labeler_admin"] == "creator"


def test_a_reviewer_reads_but_cannot_change_labels(team: dict[str, str], tmp_path: Path) -> None:
    with open_as(team, "reviewer", tmp_path) as p:
        assert p.image_count() == 2 and len(p.annotations()) == 1
        assert p.read_image(2).shape == (8, 10, 3)  # the size and hash of a file are recorded for anyone
        with pytest.raises(AccessError, match="needs the annotator right to add labels"):
            p.add_annotation(box())
        with pytest.raises(AccessError, match="needs the annotator right to mark images done"):
            p.set_done(1)
        with pytest.raises(AccessError, match="needs the annotator right to accept or reject proposals"):
            p.set_state(p.annotations()[0].id or 0, State.ACCEPTED)
        assert p.image(1).done is False and p.annotations()[0].state is State.PROPOSED


def test_an_annotator_labels_but_cannot_delete_a_category_nor_activate_a_model(
    team: dict[str, str], tmp_path: Path
) -> None:
    with open_as(team, "annotator", tmp_path) as p:
        ann = p.add_annotation(box())
        assert p.update_annotation(replace(ann, box_xywh=(1, 1, 5, 5))).revision == 2
        proposal = next(a for a in p.annotations() if a.state is State.PROPOSED)
        p.set_state(proposal.id or 0, State.ACCEPTED)
        p.set_done(1)
        p.add_category("membrane")
        p.rename_category(3, "membranes")
        p.delete_annotation(ann.id or 0)
        p.replace_proposals(2, plugin="segmenter", proposals=[], uncertainty=0.3)
        with pytest.raises(AccessError, match=r"^\w+ needs the owner right to delete a category$"):
            p.delete_category(2)
        with pytest.raises(AccessError, match="needs the owner right to activate a model version"):
            p.activate_model_version(1)
        with pytest.raises(AccessError, match="needs the owner right to add images"):
            p.add_images([tmp_path / "img" / "000.png", tmp_path / "elsewhere.png"])
        assert [c.name for c in p.categories()] == ["cell", "nucleus", "membranes"]
        assert p.image(1).done and p.active_model_version("segmenter") is None
        authors = {e["author"] for e in p.edit_log() if e["action"] in ("accepted", "done")}
        assert authors == {p.author}


def test_an_owner_does_everything(team: dict[str, str], tmp_path: Path) -> None:
    with open_as(team, "owner", tmp_path) as p:
        p.add_annotation(box())
        assert p.delete_category(1) == 2  # the category and both of its labels
        p.activate_model_version(1)
        assert [c.name for c in p.categories()] == ["nucleus"] and p.annotations() == []
        assert p.active_model_version("segmenter") is not None


def test_a_refused_action_is_one_line_in_the_cli(
    team: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = ["--image-root", str(tmp_path / "img")]
    capsys.readouterr()
    assert main(["models", team["annotator"], *root, "--activate", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.endswith("needs the owner right to activate a model version")
    assert main(["train", team["annotator"], *root, "--plugin", "segmenter", "--time-budget", "5"]) == 2
    assert capsys.readouterr().err.strip().endswith("needs the owner right to train a model version")
    assert main(["import", team["reviewer"], str(tmp_path / "nothing.json"), *root, "--format", "coco"]) == 2


def test_revoke_takes_the_right_away(team: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    user = team["annotator"].split("//")[1].split("@")[0]
    capsys.readouterr()
    assert main(["access", team["admin"], "revoke", user, "--image-root", str(tmp_path / "img")]) == 0
    assert capsys.readouterr().out.strip() == f"{user}: annotator revoked"
    with pytest.raises(AccessError, match=f"^{user} holds no right on the project at "):
        open_as(team, "annotator", tmp_path)


def test_granting_another_right_replaces_the_old_one(team: dict[str, str], tmp_path: Path) -> None:
    user = team["reviewer"].split("//")[1].split("@")[0]
    assert main(["access", team["admin"], "grant", user, "annotator", "--image-root", str(tmp_path / "img")]) == 0
    with open_as(team, "reviewer", tmp_path) as p:
        p.add_annotation(box())
        with pytest.raises(AccessError, match="owner right to delete a category"):
            p.delete_category(1)
    with Project.open(team["admin"], image_root=tmp_path / "img") as p:
        from labeler.core.access import holders

        assert [h.right for h in holders(p) if h.user == user] == ["annotator"]


def test_bad_access_requests_are_one_line(
    team: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = ["--image-root", str(tmp_path / "img")]
    for argv, message in [
        (["grant", "nobody_here", "owner"], "there is no database role named 'nobody_here'"),
        (["grant", "labeler_admin", "boss"], "grant needs a right: owner, annotator or reviewer"),
        (["grant"], "grant needs the database role"),
    ]:
        capsys.readouterr()
        assert main(["access", team["admin"], *argv, *root]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err
    # a reviewer cannot hand out rights
    user = team["annotator"].split("//")[1].split("@")[0]
    assert main(["access", team["reviewer"], "grant", user, "owner", *root]) == 2
    assert "may not change the rights here" in capsys.readouterr().err


def test_access_on_a_sqlite_project_says_roles_need_postgresql(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Project.create(tmp_path / "proj").close()
    assert main(["access", str(tmp_path / "proj")]) == 2
    assert "roles need a project in PostgreSQL" in capsys.readouterr().err


def test_the_migration_gives_an_older_postgresql_project_its_roles(pg_url: str, tmp_path: Path) -> None:
    import psycopg

    from labeler.core.access import role_name
    from labeler.core.schema import SCHEMA_VERSION

    Project.create(pg_url, image_root=tmp_path).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:  # back to schema 4, without roles
        database = conn.execute("SELECT current_database()").fetchone()[0]
        conn.execute("DROP TABLE presence")
        conn.execute("UPDATE labeler_schema SET version = 4")
        for right in ("owner", "annotator", "reviewer"):
            conn.execute(f'DROP OWNED BY "{role_name(database, right)}"')
            conn.execute(f'DROP ROLE "{role_name(database, right)}"')
    with Project.open(pg_url, image_root=tmp_path) as p:
        names = {str(r[0]) for r in p._conn.execute("SELECT rolname FROM pg_roles").fetchall()}
        assert {role_name(database, r) for r in ("owner", "annotator", "reviewer")} <= names
        assert p._conn.execute("SELECT version FROM labeler_schema").fetchone()[0] == SCHEMA_VERSION


def test_the_window_says_a_refused_action_in_a_message_box(
    team: dict[str, str],
    tmp_path: Path,
    qtbot,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from PySide6.QtWidgets import QMessageBox

    from labeler.gui.panels.classes import ClassListPanel
    from labeler.gui.panels.models import ModelListPanel

    said: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _parent, _title, text: said.append(text))
    with open_as(team, "annotator", tmp_path) as p:
        classes = ClassListPanel()
        qtbot.addWidget(classes)
        classes.set_project(p)
        assert classes.delete_category(2) is False
        models = ModelListPanel()
        qtbot.addWidget(models)
        models.set_project(p, "segmenter")
        models.select_version(1)
        models.activate_selected()
        assert [c.name for c in p.categories()] == ["cell", "nucleus"]
        assert p.active_model_version("segmenter") is None
    assert [s.split(" ", 1)[1] for s in said] == [
        "needs the owner right to delete a category",
        "needs the owner right to activate a model version",
    ]

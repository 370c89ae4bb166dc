"""The project store: images, categories, annotations, states, proposals, versions, log, transactions."""

from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import labeler.core.images as images_module
import labeler.core.store as store_module
from labeler.core.annotation import Annotation, Kind, State
from labeler.core.geometry import decode_rle, encode_mask
from labeler.core.schema import SCHEMA_VERSION
from labeler.core.store import DB_NAME, MODELS_DIR, ModelVersion, Project, ProjectError
from labeler.core.uncertainty import uncertainty_order


def write_images(folder: Path, names: list[str], size: tuple[int, int] = (12, 8)) -> list[Path]:
    """Small RGB PNGs (``size`` is width, height) with distinct content."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.full((size[1], size[0], 3), i % 256, dtype=np.uint8)
        Image.fromarray(pixels).save(path, format="PNG")
        paths.append(path)
    return paths


@pytest.fixture(params=["sqlite", "postgresql"])
def project(request: pytest.FixtureRequest, tmp_path: Path) -> Project:
    """A project of three images and two categories, on each backend in turn."""
    write_images(tmp_path / "proj" / "images", ["a.png", "b.png", "sub/c.png"])
    if request.param == "postgresql":
        p = Project.create(request.getfixturevalue("pg_url"), image_root=tmp_path / "proj")
    else:
        p = Project.create(tmp_path / "proj")
    p.add_folder(tmp_path / "proj" / "images")
    p.add_category("cat")
    p.add_category("dog")
    yield p
    p.close()


def box(image_id: int, category_id: int = 1, **kw: object) -> Annotation:
    return Annotation(image_id=image_id, category_id=category_id, kind=Kind.BOX, box_xywh=(1, 2, 3, 4), **kw)


# ---- create / open --------------------------------------------------------------------------


def test_create_makes_database_and_models_folder(tmp_path: Path) -> None:
    with Project.create(tmp_path / "new") as p:
        assert (tmp_path / "new" / DB_NAME).is_file()
        assert (tmp_path / "new" / MODELS_DIR).is_dir()
        assert p.root == (tmp_path / "new").resolve()
        assert p.image_count() == 0
    con = sqlite3.connect(tmp_path / "new" / DB_NAME)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_create_twice_is_an_error_unless_exist_ok(tmp_path: Path) -> None:
    Project.create(tmp_path / "p").close()
    with pytest.raises(ProjectError, match="already holds a project"):
        Project.create(tmp_path / "p")
    Project.create(tmp_path / "p", exist_ok=True).close()


def test_create_on_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ProjectError, match="is a file"):
        Project.create(tmp_path / "file")


def test_open_accepts_folder_or_database_file(tmp_path: Path) -> None:
    Project.create(tmp_path / "p").close()
    with Project.open(tmp_path / "p") as a, Project.open(tmp_path / "p" / DB_NAME) as b:
        assert a.root == b.root
    assert Project.is_project(tmp_path / "p")
    assert Project.is_project(tmp_path / "p" / DB_NAME)
    assert not Project.is_project(tmp_path)


def test_open_non_project_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="not a labeler project"):
        Project.open(tmp_path)


def test_corrupt_database_is_a_project_error(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / DB_NAME).write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(ProjectError, match="not a readable project database"):
        Project.open(tmp_path / "p")


def test_truncated_database_is_a_project_error(tmp_path: Path) -> None:
    with Project.create(tmp_path / "p") as p:
        p.add_category("x")
    db = tmp_path / "p" / DB_NAME
    for extra in ("-wal", "-shm"):
        (tmp_path / "p" / (DB_NAME + extra)).unlink(missing_ok=True)
    db.write_bytes(db.read_bytes()[:150])
    with pytest.raises(ProjectError):
        Project.open(tmp_path / "p")


# ---- images ---------------------------------------------------------------------------------


def test_add_folder_does_not_decode_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_images(tmp_path / "imgs", [f"{i:03d}.png" for i in range(30)])

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("adding images must not decode or open them")

    for name in ("read_image", "read_image_size", "content_hash"):
        monkeypatch.setattr(store_module, name, forbidden)
        monkeypatch.setattr(images_module, name, forbidden)
    monkeypatch.setattr(Image, "open", forbidden)
    with Project.create(tmp_path / "p") as p:
        ids = p.add_folder(tmp_path / "imgs")
        assert len(ids) == 30 == p.image_count()
        assert all(r.width is None and r.height is None for r in p.images())


def test_add_images_is_idempotent_and_reports_progress(tmp_path: Path) -> None:
    paths = write_images(tmp_path / "imgs", ["x.png", "y.png"])
    calls: list[tuple[int, int]] = []
    with Project.create(tmp_path / "p") as p:
        first = p.add_images(paths, progress=lambda d, t: calls.append((d, t)))
        again = p.add_images(paths)
        assert first == again
        assert p.image_count() == 2
    assert calls[-1] == (2, 2)


def test_add_folder_skips_hidden_and_non_images(tmp_path: Path) -> None:
    write_images(tmp_path / "imgs", ["a.png", ".hidden.png", ".cache/b.png", "deep/er/c.PNG"])
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    with Project.create(tmp_path / "p") as p:
        p.add_folder(tmp_path / "imgs")
        names = sorted(Path(r.path).name for r in p.images())
    assert names == ["a.png", "c.PNG"]


def test_a_file_name_that_is_not_utf8_is_left_out_of_a_folder_and_refused_alone(tmp_path: Path) -> None:
    """A name with bytes that are not UTF-8 (from another system's archive) can be stored by no
    backend nor written to any export: adding its folder adds the others, adding it alone says why."""
    folder = tmp_path / "imgs"
    write_images(folder, ["a.png", "ünï.png"])
    odd = os.fsdecode(os.fsencode(str(folder)) + b"/bad\xff.png")
    shutil.copy(folder / "a.png", odd)
    os.mkdir(os.fsdecode(os.fsencode(str(folder)) + b"/sub\xff"))
    shutil.copy(folder / "a.png", os.fsdecode(os.fsencode(str(folder)) + b"/sub\xff/c.png"))
    with Project.create(tmp_path / "p") as p:
        p.add_folder(folder)
        assert [r.path for r in p.images()] == ["../imgs/a.png", "../imgs/ünï.png"]
        with pytest.raises(ProjectError, match="not UTF-8"):
            p.add_images([odd])
        assert p.image_count() == 2
    assert [path.name for path in store_module.list_image_files(folder)] == ["a.png", "ünï.png"]


def test_add_images_returns_each_path_its_id_with_repeats_and_old_ones(tmp_path: Path) -> None:
    paths = write_images(tmp_path / "imgs", ["a.png", "b.png", "c.png"])
    with Project.create(tmp_path / "p") as p:
        first = p.add_images(paths[:2])
        again = p.add_images([paths[2], paths[0], paths[2]])
        assert again == [first[-1] + 1, first[0], first[-1] + 1]
        assert p.add_folder(tmp_path / "imgs") == [first[0], first[1], again[0]]


def test_add_folder_on_missing_folder_is_an_error(tmp_path: Path) -> None:
    with Project.create(tmp_path / "p") as p, pytest.raises(ProjectError, match="not a folder"):
        p.add_folder(tmp_path / "nope")


def test_paths_are_relative_and_survive_moving_the_project(tmp_path: Path) -> None:
    write_images(tmp_path / "old" / "images", ["a.png", "sub/b.png"], size=(7, 5))
    with Project.create(tmp_path / "old") as p:
        p.add_folder(tmp_path / "old" / "images")
        p.add_category("thing")
        assert sorted(r.path for r in p.images()) == ["images/a.png", "images/sub/b.png"]
        image_id = p.images()[0].id
        p.add_annotation(box(image_id))
    shutil.move(str(tmp_path / "old"), str(tmp_path / "elsewhere" / "new"))
    with Project.open(tmp_path / "elsewhere" / "new") as p:
        assert p.image_path(image_id).is_file()
        assert p.read_image(image_id).shape == (5, 7, 3)
        assert p.image_size(image_id) == (7, 5)
        assert len(p.annotations(image_id)) == 1
        found = p.find_image(tmp_path / "elsewhere" / "new" / "images" / "sub" / "b.png")
        assert found is not None and found.path == "images/sub/b.png"


def test_image_size_is_read_lazily_then_stored(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    image_id = project.images()[0].id
    assert project.image(image_id).width is None
    assert project.image_size(image_id) == (12, 8)
    assert (project.image(image_id).width, project.image(image_id).height) == (12, 8)
    monkeypatch.setattr(store_module, "read_image_size", lambda p: pytest.fail("size must come from the store now"))
    assert project.image_size(image_id) == (12, 8)


def test_read_image_records_hash(project: Project) -> None:
    image_id = project.images()[0].id
    pixels = project.read_image(image_id)
    assert pixels.shape == (8, 12, 3) and pixels.dtype == np.uint8
    assert project.image(image_id).content_hash is not None
    assert len(project.image(image_id).content_hash or "") == 64


def test_find_images_by_name_escapes_like_wildcards(tmp_path: Path) -> None:
    write_images(tmp_path / "i", ["a_1.png", "ab1.png", "x/a_1.png", "a%1.png"])
    with Project.create(tmp_path / "p") as p:
        p.add_folder(tmp_path / "i")
        assert len(p.find_images_by_name("a_1.png")) == 2
        assert len(p.find_images_by_name("a%1.png")) == 1
        assert p.find_images_by_name("missing.png") == []


def test_done_flag_and_counts(project: Project) -> None:
    first, second, _ = (r.id for r in project.images())
    project.set_done(first)
    assert project.image(first).done and not project.image(second).done
    assert project.image_count(done=True) == 1 and project.image_count(done=False) == 2
    assert [r.id for r in project.images(done=True)] == [first]
    project.set_done(first, False)
    assert project.image_count(done=True) == 0
    assert [e["action"] for e in project.edit_log()] == ["done", "undone"]


def test_unknown_image_is_a_project_error(project: Project) -> None:
    with pytest.raises(ProjectError, match="no image with id 999"):
        project.image(999)


def test_uncertainty_and_most_uncertain(project: Project) -> None:
    a, b, c = (r.id for r in project.images())
    assert uncertainty_order(project.images()) == []
    project.replace_proposals(a, plugin="test", proposals=[], uncertainty=0.2)
    project.replace_proposals(b, plugin="test", proposals=[], uncertainty=0.9)
    project.replace_proposals(c, plugin="test", proposals=[], uncertainty=0.5)
    assert [r.id for r in uncertainty_order(project.images())] == [b, c, a]
    assert project.image(b).uncertainty == 0.9
    project.set_done(b)
    assert [r.id for r in uncertainty_order(project.images())] == [c, a]


def test_ignore_mask_round_trip(project: Project) -> None:
    image_id = project.images()[0].id
    mask = np.zeros((8, 12), dtype=bool)
    mask[2:5, 3:9] = True
    project.set_ignore_mask(image_id, encode_mask(mask))
    stored = project.ignore_mask(image_id)
    assert stored is not None and np.array_equal(decode_rle(stored), mask)
    project.set_ignore_mask(image_id, None)
    assert project.ignore_mask(image_id) is None


# ---- categories -----------------------------------------------------------------------------


def test_categories_have_stable_ids_and_unique_names(project: Project) -> None:
    cat, dog = project.categories()
    assert (cat.id, cat.name, dog.id, dog.name) == (1, "cat", 2, "dog")
    assert cat.color != dog.color
    with pytest.raises(ProjectError, match="already a category named 'cat'"):
        project.add_category("cat")
    with pytest.raises(ProjectError, match="needs a name"):
        project.add_category("   ")
    renamed = project.rename_category(cat.id, "kitten")
    assert renamed.id == cat.id and project.category(1).name == "kitten"
    with pytest.raises(ProjectError, match="already a category named 'dog'"):
        project.rename_category(cat.id, "dog")
    with pytest.raises(ProjectError, match="needs a name"):
        project.rename_category(cat.id, "")
    assert project.ensure_category("dog").id == 2
    assert project.ensure_category("bird").id == 3
    assert project.recolor_category(3, (1, 2, 3)).color == (1, 2, 3)
    assert project.category_by_name("nope") is None
    with pytest.raises(ProjectError, match="no category with id 42"):
        project.category(42)


def test_category_ids_survive_reopening(tmp_path: Path) -> None:
    with Project.create(tmp_path / "p") as p:
        for name in ("z", "a", "m"):
            p.add_category(name, color=(10, 20, 30))
    with Project.open(tmp_path / "p") as p:
        assert [(c.id, c.name, c.color) for c in p.categories()] == [
            (1, "z", (10, 20, 30)),
            (2, "a", (10, 20, 30)),
            (3, "m", (10, 20, 30)),
        ]


def test_unicode_category_names(project: Project) -> None:
    c = project.add_category("Schäferhund 犬")
    assert project.category_by_name("Schäferhund 犬") == c


# ---- annotations ----------------------------------------------------------------------------


def test_each_kind_round_trips_with_geometry_intact(project: Project) -> None:
    image_id = project.images()[0].id
    mask = np.zeros((8, 12), dtype=bool)
    mask[1:6, 2:10] = True
    mask[3, 4] = False
    parts = (
        np.array([[0.5, 0.25], [10.125, 0.0], [10.0, 7.75]]),
        np.array([[1.0, 1.0], [3.0, 1.0], [3.0, 3.0], [1.0, 3.0]]),
    )
    anns = [
        Annotation(
            image_id=image_id,
            category_id=1,
            kind=Kind.BOX,
            box_xywh=(0.5, 1.25, 3.75, 4.0),
            attributes={"note": "ü"},
            group_id=7,
        ),
        Annotation(image_id=image_id, category_id=2, kind=Kind.POLYGON, polygons=parts, iscrowd=False),
        Annotation(image_id=image_id, category_id=1, kind=Kind.MASK, rle=encode_mask(mask), iscrowd=True),
    ]
    stored = project.add_annotations(anns)
    loaded = project.annotations(image_id)
    assert [a.id for a in loaded] == [a.id for a in stored]
    b, poly, m = loaded
    assert b.box_xywh == (0.5, 1.25, 3.75, 4.0)
    assert b.attributes == {"note": "ü"} and b.group_id == 7
    assert len(poly.polygons or ()) == 2
    for got, want in zip(poly.polygons or (), parts, strict=True):
        assert np.array_equal(got, want)
    assert m.iscrowd and np.array_equal(decode_rle(m.rle or {}), mask)
    assert isinstance((m.rle or {})["counts"], str)
    assert all(a.state is State.ACCEPTED and a.is_human and a.created and a.updated for a in loaded)


def test_uncompressed_rle_is_stored_compressed(project: Project) -> None:
    image_id = project.images()[0].id
    # column-major runs for an 8x12 image: 10 off, 5 on, rest off
    rle = {"size": [8, 12], "counts": [10, 5, 8 * 12 - 15]}
    ann = project.add_annotation(Annotation(image_id=image_id, category_id=1, kind=Kind.MASK, rle=rle))
    assert isinstance((ann.rle or {})["counts"], str)
    assert int(decode_rle(ann.rle or {}).sum()) == 5


def test_annotation_filters(project: Project) -> None:
    a, b, _ = (r.id for r in project.images())
    v = project.add_model_version(ModelVersion(plugin="seg", settings={}, categories=(1,), checkpoint="m/1"))
    project.add_annotation(box(a))
    project.add_annotation(box(b))
    project.add_annotation(box(a, state=State.PROPOSED, model_version=v.id, score=0.4))
    project.add_annotation(
        Annotation(image_id=a, category_id=1, kind=Kind.MASK, rle=encode_mask(np.ones((8, 12), dtype=bool)))
    )
    assert len(project.annotations()) == 4
    assert len(project.annotations(a)) == 3
    assert len(project.annotations(a, states=[State.PROPOSED])) == 1
    assert len(project.annotations(a, kinds=[Kind.MASK])) == 1
    assert len(project.annotations(states=[State.ACCEPTED], kinds=[Kind.BOX])) == 2
    assert project.annotation_counts() == {a: {"accepted": 2, "proposed": 1}, b: {"accepted": 1}}


def test_states_update_and_delete(project: Project) -> None:
    image_id = project.images()[0].id
    v = project.add_model_version(ModelVersion(plugin="seg", settings={}, categories=(1,), checkpoint="m/1"))
    p = project.add_annotation(box(image_id, state=State.PROPOSED, model_version=v.id, score=0.7))
    assert p.is_proposal and not p.is_human and p.score == pytest.approx(0.7)
    assert project.set_state(p.id or 0, State.ACCEPTED).state is State.ACCEPTED
    assert project.set_state(p.id or 0, State.REJECTED).state is State.REJECTED
    edited = project.update_annotation(
        replace(project.annotation(p.id or 0), box_xywh=(0, 0, 1, 1), model_version=None, state=State.ACCEPTED)
    )
    assert edited.box_xywh == (0, 0, 1, 1) and edited.is_human
    assert edited.updated is not None and edited.created is not None and edited.updated >= edited.created
    project.delete_annotation(p.id or 0)
    assert project.annotations(image_id) == []
    with pytest.raises(ProjectError):
        project.annotation(p.id or 0)
    with pytest.raises(ProjectError, match="never stored"):
        project.update_annotation(box(image_id))
    with pytest.raises(ProjectError, match="no annotation with id"):
        project.update_annotation(replace(box(image_id), id=12345))
    actions = [e["action"] for e in project.edit_log()]
    assert actions == ["accepted", "rejected", "edit", "delete"]  # proposals are not logged as adds


def test_deleted_annotation_comes_back_with_its_id(project: Project) -> None:
    image_id = project.images()[0].id
    ann = project.add_annotation(box(image_id))
    project.delete_annotation(ann.id or 0)
    back = project.add_annotation(ann)
    assert back.id == ann.id and back.box_xywh == ann.box_xywh


def test_invalid_annotations_are_refused(project: Project) -> None:
    image_id = project.images()[0].id
    with pytest.raises(ValueError, match="needs box_xywh"):
        Annotation(image_id=image_id, category_id=1, kind=Kind.BOX)
    with pytest.raises(ValueError, match="at least 3 vertices"):
        Annotation(image_id=image_id, category_id=1, kind=Kind.POLYGON, polygons=(np.zeros((2, 2)),))
    with pytest.raises(ValueError, match="needs a COCO RLE"):
        Annotation(image_id=image_id, category_id=1, kind=Kind.MASK, rle={"size": [1, 1]})
    with pytest.raises(ValueError, match=r"score must lie in \[0, 1\]"):
        box(image_id, score=1.5)
    with pytest.raises(store_module.INTEGRITY_ERRORS):  # the foreign key holds: no such category
        project.add_annotation(box(image_id, category_id=99))
    assert project.annotations() == []


def test_replace_proposals_never_touches_accepted_or_human(project: Project) -> None:
    image_id, other, _ = (r.id for r in project.images())
    seg1 = project.add_model_version(ModelVersion(plugin="seg", settings={}, categories=(1,), checkpoint="m/1"))
    seg2 = project.add_model_version(ModelVersion(plugin="seg", settings={}, categories=(1,), checkpoint="m/2"))
    loc = project.add_model_version(ModelVersion(plugin="loc", settings={}, categories=(1,), checkpoint="m/3"))
    human = project.add_annotation(box(image_id))
    accepted = project.add_annotation(box(image_id, state=State.PROPOSED, model_version=seg1.id, score=0.5))
    accepted = project.set_state(accepted.id or 0, State.ACCEPTED)
    rejected = project.add_annotation(box(image_id, state=State.PROPOSED, model_version=seg1.id, score=0.5))
    rejected = project.set_state(rejected.id or 0, State.REJECTED)
    old = project.add_annotation(box(image_id, state=State.PROPOSED, model_version=seg1.id, score=0.1))
    theirs = project.add_annotation(box(image_id, state=State.PROPOSED, model_version=loc.id, score=0.2))
    elsewhere = project.add_annotation(box(other, state=State.PROPOSED, model_version=seg1.id, score=0.3))

    new = project.replace_proposals(
        image_id,
        plugin="seg",
        uncertainty=0.25,
        proposals=[
            box(image_id, state=State.PROPOSED, model_version=seg2.id, score=0.9),
            box(image_id, category_id=2, state=State.PROPOSED, model_version=seg2.id, score=0.8),
        ],
    )
    ids = {a.id for a in project.annotations(image_id)}
    assert {human.id, accepted.id, rejected.id, theirs.id} <= ids
    assert old.id not in ids
    assert {a.id for a in new} <= ids and len(ids) == 6
    assert project.annotation(elsewhere.id or 0).state is State.PROPOSED
    assert project.annotation(accepted.id or 0).state is State.ACCEPTED
    assert project.image(image_id).uncertainty == pytest.approx(0.25)
    # an empty set of proposals clears the plugin's pending ones on that image
    project.replace_proposals(image_id, plugin="seg", proposals=[])
    assert {a.id for a in project.annotations(image_id)} == {human.id, accepted.id, rejected.id, theirs.id}


def test_replace_proposals_refuses_non_proposals(project: Project) -> None:
    image_id = project.images()[0].id
    with pytest.raises(ProjectError, match="proposed"):
        project.replace_proposals(image_id, plugin="seg", proposals=[box(image_id)])


# ---- model versions -------------------------------------------------------------------------


def test_model_versions_and_activation(project: Project) -> None:
    v1 = project.add_model_version(
        ModelVersion(
            plugin="seg",
            settings={"arch": "naive"},
            categories=(2, 1),
            checkpoint="models/1.safetensors",
            metrics={"miou": 0.5},
            data={"images": [1, 2]},
        ),
        activate=True,
    )
    assert v1.id is not None and v1.active and v1.created is not None
    assert (v1.settings, v1.categories, v1.metrics, v1.data) == (
        {"arch": "naive"},
        (2, 1),
        {"miou": 0.5},
        {"images": [1, 2]},
    )
    v2 = project.add_model_version(replace(v1, id=None, parent=v1.id, active=False, created=None))
    other = project.add_model_version(replace(v1, id=None, plugin="loc", created=None), activate=True)
    assert v2.parent == v1.id and not v2.active
    assert project.active_model_version("seg").id == v1.id
    project.activate_model_version(v2.id or 0)
    assert project.active_model_version("seg").id == v2.id
    assert not project.model_version(v1.id or 0).active
    assert project.active_model_version("loc").id == other.id
    assert [v.id for v in project.model_versions("seg")] == [v1.id, v2.id]
    assert len(project.model_versions()) == 3
    assert project.active_model_version("nobody") is None
    with pytest.raises(ProjectError, match="no model version"):
        project.activate_model_version(999)
    assert [e["detail"]["model_version"] for e in project.edit_log(action="activate")] == [v1.id, other.id, v2.id]


# ---- edit log -------------------------------------------------------------------------------


def test_edit_log_records_user_actions(project: Project) -> None:
    image_id = project.images()[0].id
    ann = project.add_annotation(box(image_id))
    project.log_edit("draw", image_id=image_id, annotation_id=ann.id, kind="box", seconds=3.5, detail={"tool": "box"})
    log = project.edit_log()
    assert [e["action"] for e in log] == ["add", "draw"]
    assert log[0]["annotation_id"] == ann.id and log[0]["kind"] == "box"
    assert log[1]["seconds"] == 3.5 and log[1]["detail"] == {"tool": "box"}
    assert log[0]["time"] <= log[1]["time"]
    assert project.edit_log(action="draw") == [log[1]]


# ---- transactions ---------------------------------------------------------------------------


def _snapshot(p: Project) -> tuple[object, ...]:
    return (
        [(r.id, r.path, r.done, r.uncertainty) for r in p.images()],
        p.categories(),
        [(a.id, a.state, a.box_xywh) for a in p.annotations()],
        p.model_versions(),
        p.edit_log(),
    )


def test_transaction_rollback_leaves_everything_as_it_was(project: Project, tmp_path: Path) -> None:
    image_id = project.images()[0].id
    project.add_annotation(box(image_id))
    before = _snapshot(project)
    extra = write_images(tmp_path / "more", ["n.png"])
    with pytest.raises(RuntimeError, match="boom"), project.transaction():
        project.add_images(extra)
        project.add_category("bird")
        ann = project.add_annotation(box(image_id))
        project.set_state(ann.id or 0, State.REJECTED)
        project.set_done(image_id)
        project.replace_proposals(image_id, plugin="test", proposals=[], uncertainty=0.5)
        project.add_model_version(ModelVersion(plugin="x", settings={}, categories=(), checkpoint="c"), activate=True)
        raise RuntimeError("boom")
    assert _snapshot(project) == before
    # the same holds for another connection (nothing was committed)
    with project.open_again() as again:
        assert _snapshot(again) == before


def test_failed_write_inside_a_method_rolls_back_itself(project: Project) -> None:
    image_id = project.images()[0].id
    good, bad = box(image_id), box(image_id, category_id=99)
    with pytest.raises(store_module.INTEGRITY_ERRORS):
        project.add_annotations([good, bad])
    assert project.annotations() == [] and project.edit_log() == []


def test_nested_transaction_error_undoes_only_the_inner_block(project: Project) -> None:
    image_id = project.images()[0].id
    with project.transaction():
        kept = project.add_annotation(box(image_id))
        try:
            with project.transaction():
                project.add_annotation(box(image_id, category_id=2))
                raise KeyError("inner")
        except KeyError:
            pass
        project.set_done(image_id)
    assert [a.id for a in project.annotations()] == [kept.id]
    assert project.image(image_id).done


def test_unicode_project_and_image_paths(tmp_path: Path) -> None:
    root = tmp_path / "проект 项目 é"
    write_images(root / "bilder ü", ["фото 1.png", "写真.png"], size=(9, 4))
    with Project.create(root) as p:
        p.add_folder(root / "bilder ü")
        p.add_category("ünï")
        assert sorted(Path(r.path).name for r in p.images()) == sorted(["写真.png", "фото 1.png"])
        for r in p.images():
            assert p.read_image(r.id).shape == (4, 9, 3)
            assert p.image_size(r.id) == (9, 4)
    with Project.open(root) as p:
        assert p.image_count() == 2


def test_project_reached_through_a_symlink_stores_paths_inside_it(tmp_path: Path) -> None:
    write_images(tmp_path / "real" / "images", ["a.png"])
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    with Project.create(tmp_path / "link") as p:
        p.add_folder(tmp_path / "link" / "images")
        assert [r.path for r in p.images()] == ["images/a.png"]
        assert p.find_image(tmp_path / "link" / "images" / "a.png") is not None
        assert p.find_image(tmp_path / "real" / "images" / "a.png") is not None


def test_images_outside_the_project_are_stored_relative(tmp_path: Path) -> None:
    write_images(tmp_path / "photos", ["a.png"])
    with Project.create(tmp_path / "projects" / "p") as p:
        p.add_folder(tmp_path / "photos")
        assert [r.path for r in p.images()] == ["../../photos/a.png"]
        assert p.read_image(p.images()[0].id).shape == (8, 12, 3)
    # moving the project together with its images keeps it working
    shutil.move(str(tmp_path), str(tmp_path.parent / (tmp_path.name + "-moved")))
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    try:
        with Project.open(moved / "projects" / "p") as p:
            assert p.image_path(p.images()[0].id).is_file()
    finally:
        shutil.move(str(moved), str(tmp_path))


# ---- teams: who edited, stale copies --------------------------------------------------------


def test_edits_record_who_made_them(project: Project) -> None:
    image_id = project.images()[0].id
    ann = project.add_annotation(box(image_id))
    project.set_state(ann.id or 0, State.REJECTED)
    project.set_done(image_id)
    authors = {entry["author"] for entry in project.edit_log()}
    expected = "labeler_admin" if project.url is not None else store_module._login_name()
    assert authors == {expected}
    if project.url is not None:  # the database user, not a name the client makes up
        assert project.author == project._query("SELECT current_user")[0][0]


def test_accepting_a_proposal_someone_just_changed_is_refused_and_changes_nothing(project: Project) -> None:
    image_id = project.images()[0].id
    first, second = project.add_annotations([box(image_id), box(image_id)])
    with project.open_again() as other:
        other.update_annotation(replace(other.annotation(second.id or 0), box_xywh=(5, 5, 2, 2)))
    log_before = len(project.edit_log())
    with pytest.raises(store_module.StaleAnnotationError, match=r"annotation .* changed by someone else"):
        project.set_states([first, second], State.ACCEPTED)
    assert [project.annotation(a.id or 0).state for a in (first, second)] == [first.state, second.state]
    assert project.annotation(second.id or 0).box_xywh == (5, 5, 2, 2) and len(project.edit_log()) == log_before
    # fresh copies are accepted; a copy without a known revision asks for no check
    (accepted,) = project.set_states([project.annotation(second.id or 0)], State.ACCEPTED)
    assert project.annotation(second.id or 0).state is State.ACCEPTED and accepted.revision is not None
    assert project.set_states([replace(first, revision=None)], State.REJECTED)[0].state is State.REJECTED


def test_saving_a_stale_annotation_is_refused_and_keeps_the_other_edit(project: Project) -> None:
    image_id = project.images()[0].id
    mine = project.add_annotation(box(image_id))
    with project.open_again() as other:
        theirs = other.annotation(mine.id or 0)
        saved = other.update_annotation(replace(theirs, box_xywh=(5, 5, 2, 2)))
        assert saved.revision == (mine.revision or 0) + 1
    with pytest.raises(store_module.StaleAnnotationError, match="changed by someone else"):
        project.update_annotation(replace(mine, box_xywh=(0, 0, 1, 1)))
    assert project.annotation(mine.id or 0).box_xywh == (5, 5, 2, 2)
    # a fresh copy saves, and so does a copy whose revision is not known (no check asked)
    fresh = project.annotation(mine.id or 0)
    assert project.update_annotation(replace(fresh, box_xywh=(1, 1, 1, 1))).box_xywh == (1, 1, 1, 1)
    assert project.update_annotation(replace(mine, revision=None, box_xywh=(2, 2, 1, 1))).box_xywh == (2, 2, 1, 1)

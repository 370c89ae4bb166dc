"""Shared machinery of labeler.formats: finding images, atomic output, reports, the registry,
and the all-or-nothing promise of imports. Helpers here are reused by the other format tests."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labeler.core.annotation import Annotation, Kind
from labeler.core.store import Project
from labeler.formats import (
    FORMATS,
    detect_format,
    export_annotations,
    import_annotations,
)
from labeler.formats.common import (
    ImageFinder,
    ImportReport,
    Tally,
    atomic_file,
    atomic_folder,
    export_keys,
)
from labeler.formats.errors import FormatError

# ---- helpers used by every format test ----------------------------------------------------------


def make_image(path: Path, width: int = 40, height: int = 30, *, fmt: str = "PNG") -> Path:
    """A small RGB image file with some texture; ``fmt`` may differ from the suffix on purpose."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(path.name)) % 2**32)
    pixels = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def project_state(project: Project) -> dict[str, object]:
    """Everything an import may change, to compare before and after."""
    return {
        "images": [(r.path, r.done, r.width, r.height) for r in project.images()],
        "categories": [(c.id, c.name) for c in project.categories()],
        "annotations": len(project.annotations()),
        "ignore": [project.ignore_mask(r.id) for r in project.images()],
    }


def coco_document(tmp_path: Path) -> dict[str, object]:
    """A small COCO file over two generated images, one of them in a sub-folder."""
    make_image(tmp_path / "imgs" / "a.png", 40, 30)
    make_image(tmp_path / "imgs" / "sub" / "b.png", 50, 20)
    return {
        "images": [
            {"id": 7, "file_name": "imgs/a.png", "width": 40, "height": 30},
            {"id": 9, "file_name": "imgs/sub/b.png", "width": 50, "height": 20},
        ],
        "categories": [{"id": 3, "name": "cat"}, {"id": 17, "name": "dog"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 7,
                "category_id": 3,
                "iscrowd": 0,
                "bbox": [2, 2, 10, 10],
                "segmentation": [[2, 2, 12, 2, 12, 12]],
            },
            {"id": 2, "image_id": 9, "category_id": 17, "iscrowd": 0, "bbox": [5, 5, 10, 5]},
        ],
    }


# ---- image finding ------------------------------------------------------------------------------


def test_finder_resolves_written_path_images_dir_and_project(
    make_project: Callable[[Path], Project], tmp_path: Path
) -> None:
    project = make_project(tmp_path / "proj")
    make_image(tmp_path / "ann" / "x.png")
    make_image(tmp_path / "pool" / "deep" / "y.png")
    known = make_image(tmp_path / "known" / "z.png")
    project.add_images([known])
    tally = Tally()
    finder = ImageFinder(project, images_dir=tmp_path / "pool", tally=tally)
    x = finder.find("x.png", bases=[tmp_path / "ann"])
    y = finder.find("C:\\somewhere\\else\\y.png", bases=[tmp_path / "ann"])
    z = finder.find("gone/z.png", bases=[tmp_path / "ann"])
    assert None not in (x, y, z)
    assert project.image(x).path.endswith("ann/x.png")
    assert project.image(y).path.endswith("pool/deep/y.png")
    assert project.image(z).path.endswith("known/z.png")
    assert tally.added == {x, y}
    assert finder.find("nowhere.png", bases=[tmp_path]) is None
    assert finder.find_stem("deep/y", bases=[]) == y


def test_finder_refuses_to_guess_between_two_files_of_one_name(
    make_project: Callable[[Path], Project], tmp_path: Path
) -> None:
    project = make_project(tmp_path / "proj")
    make_image(tmp_path / "pool" / "a" / "same.png")
    make_image(tmp_path / "pool" / "b" / "same.png")
    finder = ImageFinder(project, images_dir=tmp_path / "pool", tally=Tally())
    assert finder.find("same.png") is None
    found = finder.find("b/same.png")
    assert found is not None and project.image(found).path.endswith("pool/b/same.png")


def test_missing_images_folder_is_a_format_error(make_project: Callable[[Path], Project], tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj")
    with pytest.raises(FormatError, match="--images folder does not exist"):
        ImageFinder(project, images_dir=tmp_path / "nope", tally=Tally())


# ---- atomic output ------------------------------------------------------------------------------


def test_atomic_file_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    with atomic_file(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_atomic_folder_moves_in_only_when_complete(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_folder(out) as tmp:
        (tmp / "a.txt").write_text("1")
        raise RuntimeError("cancelled")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with atomic_folder(out) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "a.txt").write_text("1")
    assert (out / "sub" / "a.txt").read_text() == "1"
    (out / "mine.txt").write_text("keep")
    with atomic_folder(out) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "a.txt").write_text("2")
    assert (out / "sub" / "a.txt").read_text() == "2"
    assert (out / "mine.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_export_keys_strip_the_common_folder_and_keep_namesakes_apart(
    make_project: Callable[[Path], Project], tmp_path: Path
) -> None:
    project = make_project(tmp_path / "proj")
    ids = project.add_images(
        [
            make_image(tmp_path / "data" / "a" / "1.png"),
            make_image(tmp_path / "data" / "b" / "1.png"),
            make_image(tmp_path / "data" / "a" / "2.jpg", fmt="JPEG"),
        ]
    )
    keys = export_keys(project.images())
    assert [keys[i] for i in ids] == ["a/1", "b/1", "a/2"]


# ---- reports and the registry -------------------------------------------------------------------


def test_report_summary_names_counts_and_reasons() -> None:
    report = ImportReport(
        format="coco",
        source="x.json",
        images=3,
        images_added=2,
        annotations=5,
        done=3,
        skipped={"image file not found": 1, "line shape (no area)": 2},
    )
    text = report.summary()
    assert "3 images (2 new, 3 marked done), 5 annotations imported" in text
    assert "3 skipped (line shape (no area): 2; image file not found: 1)" in text


def test_registry_lists_every_format_with_its_options() -> None:
    assert list(FORMATS) == ["coco", "labelme", "voc", "yolo", "masks"]
    assert FORMATS["coco"].options("export") == ("masks", "file_names")
    assert FORMATS["masks"].options("import") == ("values", "ignore")
    assert not FORMATS["coco"].export_is_folder and FORMATS["yolo"].export_is_folder


def test_unknown_format_and_option_are_format_errors(make_project: Callable[[Path], Project], tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj")
    with pytest.raises(FormatError, match="unknown format"):
        export_annotations(project, tmp_path / "o", format="tfrecord")
    with pytest.raises(FormatError, match="no option 'values'"):
        export_annotations(project, tmp_path / "o.json", format="coco", values="1=a")


def test_detect_format(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text(json.dumps({"images": [], "annotations": []}))
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "x.json").write_text(json.dumps({"shapes": []}))
    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "classes.txt").write_text("a\n")
    (tmp_path / "v.xml").write_text("<annotation/>")
    assert detect_format(tmp_path / "c.json") == "coco"
    assert detect_format(tmp_path / "lm") == "labelme"
    assert detect_format(tmp_path / "y") == "yolo"
    assert detect_format(tmp_path / "v.xml") == "voc"
    (tmp_path / "odd.txt").write_text("?")
    with pytest.raises(FormatError, match="cannot tell its format"):
        detect_format(tmp_path / "odd.txt")


# ---- all or nothing -------------------------------------------------------------------------------


def test_failure_midway_leaves_the_project_unchanged(make_project: Callable[[Path], Project], tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj")
    project.add_images([make_image(tmp_path / "old.png")])
    project.add_category("old")
    before = project_state(project)
    doc = coco_document(tmp_path)
    # the second image's annotation is broken: the first image was already written when it fails
    doc["annotations"][1]["segmentation"] = {"size": [20, 50], "counts": 12}
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(FormatError, match="RLE"):
        import_annotations(project, tmp_path / "bad.json", format="coco")
    assert project_state(project) == before


def test_cancelling_through_progress_rolls_back(make_project: Callable[[Path], Project], tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj")
    (tmp_path / "ok.json").write_text(json.dumps(coco_document(tmp_path)))
    before = project_state(project)
    calls = []

    def cancel(done: int, total: int) -> None:
        calls.append(done)
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_annotations(project, tmp_path / "ok.json", format="coco", progress=cancel)
    assert calls == [1, 2]
    assert project_state(project) == before
    report = import_annotations(project, tmp_path / "ok.json", format="coco")
    assert report.annotations == 2 and report.images == 2


def test_importing_twice_adds_nothing_the_second_time(make_project: Callable[[Path], Project], tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj")
    (tmp_path / "ok.json").write_text(json.dumps(coco_document(tmp_path)))
    first = import_annotations(project, tmp_path / "ok.json", format="coco")
    second = import_annotations(project, tmp_path / "ok.json", format="coco")
    assert (first.annotations, second.annotations) == (2, 0)
    assert second.skipped == {"already in the project": 2}
    assert second.images_added == 0 and second.done == 0
    assert len(project.annotations()) == 2


def test_import_does_not_touch_existing_labels_and_logs_once(
    make_project: Callable[[Path], Project], tmp_path: Path
) -> None:
    project = make_project(tmp_path / "proj")
    (tmp_path / "ok.json").write_text(json.dumps(coco_document(tmp_path)))
    image_id = project.add_images([tmp_path / "imgs" / "a.png"])[0]
    mine = project.add_annotation(
        Annotation(image_id=image_id, category_id=project.add_category("cat").id, kind=Kind.BOX, box_xywh=(1, 1, 3, 3))
    )
    import_annotations(project, tmp_path / "ok.json", format="coco", mark_done=False)
    assert project.annotation(mine.id or 0).box_xywh == (1, 1, 3, 3)
    assert len(project.annotations()) == 3
    assert project.image_count(done=True) == 0
    assert [e["detail"]["format"] for e in project.edit_log(action="import")] == ["coco"]


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("umask_022")
@pytest.mark.parametrize("fmt", ["coco", "yolo", "voc", "labelme", "masks"])
def test_exports_get_the_users_normal_file_mode(
    make_project: Callable[[Path], Project], tmp_path: Path, fmt: str
) -> None:
    project = make_project(tmp_path / "proj")
    (tmp_path / "ok.json").write_text(json.dumps(coco_document(tmp_path)))
    import_annotations(project, tmp_path / "ok.json", format="coco")
    out = tmp_path / ("out.json" if fmt == "coco" else "out")
    export_annotations(project, out, format=fmt)
    entries = [out] + (list(out.rglob("*")) if out.is_dir() else [])
    assert len(entries) > 1 or fmt == "coco"
    for entry in entries:
        want = 0o755 if entry.is_dir() else 0o644
        assert entry.stat().st_mode & 0o777 == want, (entry, oct(entry.stat().st_mode))


@pytest.mark.usefixtures("umask_022")
def test_atomic_file_keeps_the_mode_of_the_file_it_replaces(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    with atomic_file(target) as tmp:
        tmp.write_text("1")
    assert target.stat().st_mode & 0o777 == 0o644
    target.chmod(0o640)
    with atomic_file(target) as tmp:
        tmp.write_text("2")
    assert target.stat().st_mode & 0o777 == 0o640

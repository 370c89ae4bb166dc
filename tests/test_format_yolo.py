"""YOLO text labels: boxes and polygons, class-name files, export layout, round trips, errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from test_format_common import make_image, project_state

from labeler.core.annotation import Annotation, Kind
from labeler.core.geometry import annotation_mask, encode_mask
from labeler.core.store import Project
from labeler.formats import export_annotations, import_annotations
from labeler.formats.errors import FormatError
from labeler.formats.yolo import read_class_names


def labelled_project(make_project: Callable[[Path], Project], tmp_path: Path) -> Project:
    project = make_project(tmp_path / "proj")
    a, b = project.add_images(
        [
            make_image(tmp_path / "imgs" / "a.png", 40, 20),
            make_image(tmp_path / "imgs" / "deep" / "b.jpg", 20, 40, fmt="JPEG"),
        ]
    )
    car, person = project.add_category("car").id, project.add_category("person").id
    blob = np.zeros((20, 40), bool)
    blob[4:12, 20:30] = True
    project.add_annotations(
        [
            Annotation(image_id=a, category_id=car, kind=Kind.BOX, box_xywh=(4, 2, 10, 8)),
            Annotation(image_id=a, category_id=person, kind=Kind.MASK, rle=encode_mask(blob)),
            Annotation(image_id=a, category_id=person, kind=Kind.MASK, rle=encode_mask(blob), iscrowd=True),
            Annotation(
                image_id=b,
                category_id=person,
                kind=Kind.POLYGON,
                polygons=(np.array([[1, 1], [10, 1], [10, 30]]), np.array([[12, 32], [18, 32], [15, 38]])),
            ),
        ]
    )
    project.set_done(b, True)
    return project


def test_export_layout_and_normalised_lines(make_project: Callable[[Path], Project], tmp_path: Path) -> None:
    project = labelled_project(make_project, tmp_path)
    report = export_annotations(project, tmp_path / "out", format="yolo")
    assert (report.images, report.annotations, report.files) == (2, 3, 4)
    assert report.skipped == {"crowd region (no YOLO form)": 1}
    assert (tmp_path / "out" / "classes.txt").read_text() == "car\nperson\n"
    assert 'names:\n  0: "car"\n  1: "person"' in (tmp_path / "out" / "data.yaml").read_text()
    a_lines = (tmp_path / "out" / "labels" / "a.txt").read_text().splitlines()
    assert a_lines[0] == "0 0.225000 0.300000 0.250000 0.400000"
    values = [float(v) for v in a_lines[1].split()[1:]]
    assert a_lines[1].startswith("1 ") and all(0 <= v <= 1 for v in values)
    b_lines = (tmp_path / "out" / "labels" / "deep" / "b.txt").read_text().splitlines()
    assert b_lines == [
        "1 0.050000 0.025000 0.500000 0.025000 0.500000 0.750000",
        "1 0.600000 0.800000 0.900000 0.800000 0.750000 0.950000",
    ]


def test_round_trip_through_yolo(make_project: Callable[[Path], Project], tmp_path: Path) -> None:
    project = labelled_project(make_project, tmp_path)
    export_annotations(project, tmp_path / "out", format="yolo")
    again = make_project(tmp_path / "again")
    report = import_annotations(again, tmp_path / "out", format="yolo", images_dir=tmp_path / "imgs")
    assert (report.images, report.images_added, report.annotations) == (2, 2, 4)  # two polygon parts → two objects
    by_name = {Path(r.path).name: r.id for r in again.images()}
    anns = again.annotations()
    box = next(a for a in anns if a.kind is Kind.BOX)
    assert box.image_id == by_name["a.png"] and box.box_xywh == pytest.approx((4, 2, 10, 8), abs=1e-4)
    traced = next(a for a in anns if a.kind is Kind.POLYGON and a.image_id == by_name["a.png"])
    original = next(a for a in project.annotations() if a.kind is Kind.MASK and not a.iscrowd)
    m1, m2 = annotation_mask(traced, 20, 40), annotation_mask(original, 20, 40)
    assert (m1 & m2).sum() / (m1 | m2).sum() > 0.98
    assert [again.category(a.category_id).name for a in anns] == ["car", "person", "person", "person"]


def test_class_names_from_each_file_kind(tmp_path: Path) -> None:
    cases = {
        "classes.txt": "a\nb\n\n",
        "data.yaml": "path: x\nnames: [a, 'b c', \"d\"]\nnc: 3\n",
        "dataset.yaml": "nc: 2\nnames:\n  - a\n  - b # comment\ntrain: x\n",
        "data.yml": "names:\n  0: a\n  1: 'b'\n",
    }
    expected = {
        "classes.txt": ["a", "b"],
        "data.yaml": ["a", "b c", "d"],
        "dataset.yaml": ["a", "b"],
        "data.yml": ["a", "b"],
    }
    for name, text in cases.items():
        folder = tmp_path / name.replace(".", "_")
        folder.mkdir()
        (folder / name).write_text(text)
        assert read_class_names(folder) == expected[name], name
    assert read_class_names(tmp_path) is None


def test_without_class_names_classes_are_numbers(make_project: Callable[[Path], Project], tmp_path: Path) -> None:
    make_image(tmp_path / "ds" / "images" / "x.png", 10, 10)
    (tmp_path / "ds" / "labels").mkdir(parents=True)
    (tmp_path / "ds" / "labels" / "x.txt").write_text("3 0.5 0.5 0.2 0.2 0.9\n\n7 0.1 0.1 0.5 0.1 0.3 0.4\n")
    project = make_project(tmp_path / "proj")
    report = import_annotations(project, tmp_path / "ds", format="yolo")
    assert report.annotations == 2 and [c.name for c in project.categories()] == ["3", "7"]
    box, poly = project.annotations()
    assert box.box_xywh == pytest.approx((4, 4, 2, 2)) and poly.kind is Kind.POLYGON


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("5 0.5 0.5 0.1 0.1", "class 5 is not in the class names"),
        ("0 0.5 0.5", "expected 'class cx cy w h'"),
        ("0 a b c d", "expected numbers"),
        ("0.5 0.5 0.5 0.1 0.1", "non-negative integer"),
        ("0 0.5 0.5 0 0.1", "positive width"),
    ],
)
def test_bad_lines_name_file_and_line_and_change_nothing(
    make_project: Callable[[Path], Project], tmp_path: Path, line: str, message: str
) -> None:
    make_image(tmp_path / "ds" / "a.png")
    make_image(tmp_path / "ds" / "b.png")
    (tmp_path / "ds" / "classes.txt").write_text("only\n")
    (tmp_path / "ds" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (tmp_path / "ds" / "b.txt").write_text(f"0 0.5 0.5 0.1 0.1\n{line}\n")
    project = make_project(tmp_path / "proj")
    before = project_state(project)
    with pytest.raises(FormatError, match=message) as info:
        import_annotations(project, tmp_path / "ds", format="yolo")
    assert "b.txt:2" in str(info.value)
    assert project_state(project) == before


def test_label_files_pair_with_images_by_stem_from_one_listing_per_folder(
    make_project: Callable[[Path], Project], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A label file pairs with the image of exactly its stem (glob characters and dots in names
    included: ``two`` once took ``two.dots.jpg``); each image folder is listed once, not once per
    label file (a 20,000-file import took 222 s, now 8 s)."""
    import labeler.formats.common as common

    source = tmp_path / "yolo"
    names = ["[a]*?", "plain", "two.dots", "two"]
    for name in names:
        make_image(source / "images" / f"{name}.png", 40, 20)
        (source / "labels").mkdir(parents=True, exist_ok=True)
        (source / "labels" / f"{name}.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    make_image(source / "images" / "two.dots.jpg", 40, 20, fmt="JPEG")  # two.dots: the .jpg sorts first
    (source / "images" / "notes.txt").write_text("not an image")
    (source / "classes.txt").write_text("thing\n")
    listed: list[str] = []
    real = common.image_files_by_folder

    def counting(folder: str, *, recursive: bool = True):
        listed.append(folder)
        return real(folder, recursive=recursive)

    monkeypatch.setattr(common, "image_files_by_folder", counting)
    project = make_project(tmp_path / "proj")
    report = import_annotations(project, source, format="yolo", images_dir=source / "images")
    assert report.images == 4 and report.annotations == 4
    paths = sorted(Path(r.path).name for r in project.images())
    assert paths == ["[a]*?.png", "plain.png", "two.dots.jpg", "two.png"]
    assert len(listed) == len(set(listed)) <= 2  # each folder once (the label files' and the images')

"""Label masks (PNG of class values): import with values and ignore, export, pixel-exact round trips."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_format_common import make_image, project_state

from labeler.core.annotation import Annotation, Kind
from labeler.core.geometry import decode_rle
from labeler.core.store import Project
from labeler.formats import export_annotations, import_annotations
from labeler.formats.errors import FormatError
from labeler.formats.masks import parse_values, read_label_png


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


CAMVID = [
    "Sky",
    "Building",
    "Pole",
    "Road",
    "Pavement",
    "Tree",
    "SignSymbol",
    "Fence",
    "Car",
    "Pedestrian",
    "Bicyclist",
]


def label_set(tmp_path: Path) -> tuple[Path, Path, list[np.ndarray]]:
    """Two images with label PNGs of values 0, 1, 2 and 9 (= ignore)."""
    labels = []
    (tmp_path / "label").mkdir()
    for i, name in enumerate(["a", "b"]):
        make_image(tmp_path / "image" / f"{name}.jpg", 12, 8, fmt="JPEG")
        label = np.zeros((8, 12), np.uint8)
        label[2:6, 1:5] = 1
        label[:, 8 + i :] = 2
        label[7, :] = 9
        Image.fromarray(label).save(tmp_path / "label" / f"{name}.png")
        labels.append(label)
    return tmp_path / "label", tmp_path / "image", labels


def test_import_one_mask_per_class_and_the_ignore_mask(make_project: Callable[[Path], Project], tmp_path: Path) -> None:
    labels, images, arrays = label_set(tmp_path)
    project = make_project(tmp_path / "proj")
    report = import_annotations(
        project, labels, format="masks", images_dir=images, values="0=ground,1=rock,2=sky", ignore=9
    )
    assert (report.images, report.annotations, report.ignore_masks, report.done) == (2, 6, 2, 2)
    assert [c.name for c in project.categories()] == ["ground", "rock", "sky"]
    for record, label in zip(project.images(), arrays, strict=True):
        anns = project.annotations(record.id)
        assert all(a.kind is Kind.MASK for a in anns)
        for ann in anns:
            value = {"ground": 0, "rock": 1, "sky": 2}[project.category(ann.category_id).name]
            assert (decode_rle(ann.rle or {}) == (label == value)).all()
        assert (decode_rle(project.ignore_mask(record.id) or {}) == (label == 9)).all()


def test_values_left_out_are_background_and_counted(make_project: Callable[[Path], Project], tmp_path: Path) -> None:
    labels, images, _ = label_set(tmp_path)
    project = make_project(tmp_path / "proj")
    report = import_annotations(project, labels, format="masks", images_dir=images, values="1=rock")
    assert report.annotations == 2 and [c.name for c in project.categories()] == ["rock"]
    assert report.skipped == {f"pixels of value {v} not in the mapping (left as background)": 2 for v in (0, 2, 9)}


def test_without_values_classes_are_named_by_number_and_round_trip(
    make_project: Callable[[Path], Project], tmp_path: Path
) -> None:
    labels, images, arrays = label_set(tmp_path)
    project = make_project(tmp_path / "proj")
    import_annotations(project, labels, format="masks", images_dir=images, ignore=9)
    assert sorted(c.name for c in project.categories()) == ["0", "1", "2"]
    report = export_annotations(project, tmp_path / "out", format="masks", ignore=9)
    assert (report.images, report.annotations, report.files) == (2, 6, 3)
    for name, label in zip(["a", "b"], arrays, strict=True):
        assert (pixels(tmp_path / "out" / f"{name}.png") == label).all()
    mapping = json.loads((tmp_path / "out" / "mapping.json").read_text())
    assert mapping == {"values": {"0": "0", "1": "1", "2": "2"}, "background": 0, "ignore": 9}
    # the mapping file brings the same classes back without options
    again = make_project(tmp_path / "again")
    report = import_annotations(again, tmp_path / "out", format="masks", images_dir=images)
    assert report.annotations == 6 and report.ignore_masks == 2


def test_export_paints_polygons_background_and_unfinished_images(
    make_project: Callable[[Path], Project], tmp_path: Path
) -> None:
    project = make_project(tmp_path / "proj")
    done, todo = project.add_images([make_image(tmp_path / "d.png", 10, 10), make_image(tmp_path / "t.png", 10, 10)])
    cell = project.add_category("cell").id
    project.add_annotations(
        [
            Annotation(
                image_id=done,
                category_id=cell,
                kind=Kind.POLYGON,
                polygons=(np.array([[2, 2], [6, 2], [6, 6], [2, 6]]),),
            ),
            Annotation(
                image_id=todo,
                category_id=cell,
                kind=Kind.POLYGON,
                polygons=(np.array([[0, 0], [3, 0], [3, 3], [0, 3]]),),
            ),
            Annotation(image_id=done, category_id=cell, kind=Kind.BOX, box_xywh=(0, 0, 1, 1)),
        ]
    )
    project.set_done(done, True)
    report = export_annotations(project, tmp_path / "out", format="masks")
    assert report.skipped == {"box (no pixels of its own)": 1}
    d = pixels(tmp_path / "out" / "d.png")
    t = pixels(tmp_path / "out" / "t.png")
    assert d[3, 3] == 1 and d[0, 0] == 0 and d[8, 8] == 0  # uncovered pixels of a done image: background
    assert t[1, 1] == 1 and t[8, 8] == 255  # of an image not done: ignore


def test_parse_values_and_errors(make_project: Callable[[Path], Project], tmp_path: Path) -> None:
    assert parse_values("0=membrane, 255=cell") == {0: "membrane", 255: "cell"}
    assert parse_values({3: "x"}) == {3: "x"}
    for bad, message in [
        ("0membrane", "VALUE=NAME"),
        ("x=a", "not a pixel value"),
        ("1=a,1=b", "given twice"),
        ("1=", "needs a class name"),
        (",", "no VALUE=NAME"),
    ]:
        with pytest.raises(FormatError, match=message):
            parse_values(bad)
    labels, images, _ = label_set(tmp_path)
    project = make_project(tmp_path / "proj")
    with pytest.raises(FormatError, match="both the ignore value and class"):
        import_annotations(project, labels, format="masks", images_dir=images, values="9=x", ignore=9)


def test_colour_label_image_is_refused_and_changes_nothing(
    make_project: Callable[[Path], Project], tmp_path: Path
) -> None:
    labels, images, _ = label_set(tmp_path)
    rgb = np.zeros((8, 12, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(labels / "b.png")
    project = make_project(tmp_path / "proj")
    before = project_state(project)
    with pytest.raises(FormatError, match=r"b\.png: a colour image"):
        import_annotations(project, labels, format="masks", images_dir=images)
    assert project_state(project) == before
    gray_rgb = np.repeat(np.arange(12, dtype=np.uint8)[None, :, None], 8, axis=0).repeat(3, axis=2)
    Image.fromarray(gray_rgb).save(labels / "b.png")
    assert (read_label_png(labels / "b.png") == np.arange(12)[None, :]).all()


def test_size_mismatch_and_missing_image_are_skipped(make_project: Callable[[Path], Project], tmp_path: Path) -> None:
    labels, images, _ = label_set(tmp_path)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(labels / "b.png")
    Image.fromarray(np.zeros((8, 12), np.uint8)).save(labels / "c.png")
    report = import_annotations(make_project(tmp_path / "proj"), labels, format="masks", images_dir=images)
    assert report.images == 1
    assert report.skipped == {"label image size differs from the image": 1, "image file not found": 1}


# ---- real files ---------------------------------------------------------------------------------


def test_membrane_round_trip_is_pixel_exact(
    make_project: Callable[[Path], Project], shared_data: Path, tmp_path: Path
) -> None:
    root = shared_data / "membrane"
    project = make_project(tmp_path / "proj")
    report = import_annotations(
        project, root / "label", format="masks", images_dir=root / "image", values="0=membrane,255=cell"
    )
    assert (report.images, report.annotations, report.done) == (24, 48, 24) and not report.skipped
    export_annotations(project, tmp_path / "out", format="masks", values="0=membrane,255=cell")
    for path in sorted((root / "label").glob("*.png")):
        assert (pixels(tmp_path / "out" / path.name) == pixels(path)).all(), path.name


def test_camvid_round_trip_is_pixel_exact(
    make_project: Callable[[Path], Project], shared_data: Path, tmp_path: Path
) -> None:
    root = shared_data / "camvid"
    values = ",".join(f"{i}={name}" for i, name in enumerate(CAMVID))
    project = make_project(tmp_path / "proj")
    for split in ("train", "val"):
        report = import_annotations(
            project, root / f"{split}annot", format="masks", images_dir=root / split, values=values, ignore=11
        )
        assert report.images == report.ignore_masks == len(list((root / split).glob("*.png")))
    assert [c.name for c in project.categories()] == CAMVID
    export_annotations(project, tmp_path / "out", format="masks", values=values, ignore=11)
    originals = sorted((root / "trainannot").glob("*.png")) + sorted((root / "valannot").glob("*.png"))
    assert len(originals) == 20
    for path in originals:
        exported = tmp_path / "out" / f"{path.parent.name.replace('annot', '')}" / path.name
        assert (pixels(exported) == pixels(path)).all(), path.name


def test_labelme_voc_palette_masks_with_class_names_file(
    make_project: Callable[[Path], Project], shared_data: Path, tmp_path: Path
) -> None:
    """Palette PNGs (values are palette indices), names from class_names.txt, 255 = ignore."""
    root = shared_data / "labelme-examples" / "instance_segmentation" / "data_dataset_voc"
    names = root / "class_names.txt"
    project = make_project(tmp_path / "proj")
    report = import_annotations(
        project,
        root / "SegmentationClass",
        format="masks",
        images_dir=root / "JPEGImages",
        values=str(names),
        ignore=255,
    )
    assert report.images == 3 and not report.skipped
    assert "_background_" not in {c.name for c in project.categories()}  # value 0 is background
    assert {"person", "bottle"} <= {c.name for c in project.categories()}
    export_annotations(project, tmp_path / "out", format="masks", values=str(names), ignore=255)
    for path in sorted((root / "SegmentationClass").glob("*.png")):
        with Image.open(path) as im:
            assert im.mode == "P"
        assert (pixels(tmp_path / "out" / path.name) == pixels(path)).all(), path.name

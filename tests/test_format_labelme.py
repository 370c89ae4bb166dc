"""labelme JSON: every shape type labelme writes, groups, ignore regions, export and round trips."""

from __future__ import annotations

import base64
import contextlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw
from pycocotools.coco import COCO
from test_format_common import make_image, project_state

from labeler.core.annotation import Kind
from labeler.core.geometry import annotation_mask, decode_rle, polygons_to_mask
from labeler.core.store import Project
from labeler.formats import export_annotations, import_annotations
from labeler.formats.errors import FormatError


def png_b64(mask: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def shape(label: str, points: list[list[float]], kind: str, **extra: Any) -> dict[str, Any]:
    return {"label": label, "points": points, "group_id": None, "shape_type": kind, "flags": {}} | extra


def primitives_file(tmp_path: Path) -> Path:
    """One image (a PNG named .jpg) with every shape type, no imageHeight/imageWidth."""
    make_image(tmp_path / "data" / "pic.jpg", 80, 60, fmt="PNG")
    crop = np.zeros((6, 8), dtype=bool)
    crop[1:5, 2:7] = True
    doc = {
        "version": "5.7.0",
        "flags": {"blurry": False},
        "imagePath": "pic.jpg",
        "imageData": None,
        "shapes": [
            shape("box", [[30, 20], [10, 5]], "rectangle", flags={"occluded": True}),
            shape("tri", [[40, 40], [60, 40], [50, 55]], "polygon", description="a triangle"),
            shape("round", [[20, 40], [20, 50]], "circle"),
            shape("edge", [[1, 1], [5, 5]], "line"),
            shape("dot", [[3, 3]], "point"),
            shape("path", [[1, 1], [5, 5], [9, 1]], "linestrip"),
            shape("blob", [[60.4, 10.7], [67.4, 15.7]], "mask", mask=png_b64(crop)),
            shape("person", [[0, 50], [8, 50], [8, 58]], "polygon", group_id=3),
            shape("person", [[10, 50], [18, 50], [18, 58], [10, 58]], "polygon", group_id=3),
            shape("__ignore__", [[70, 50], [79, 50], [79, 59], [70, 59]], "polygon"),
        ],
    }
    path = tmp_path / "data" / "pic.json"
    path.write_text(json.dumps(doc))
    return path


def test_every_shape_type(make_project: Callable[[Path], Project], tmp_path: Path) -> None:
    source = primitives_file(tmp_path)
    project = make_project(tmp_path / "proj")
    report = import_annotations(project, source.parent, format="labelme", add_images=True)
    assert (report.images, report.annotations, report.ignore_masks, report.done) == (1, 5, 1, 1)
    assert report.skipped == {"line shape (no area)": 1, "point shape (no area)": 1, "linestrip shape (no area)": 1}
    image = project.images()[0]
    assert (image.width, image.height) == (80, 60)  # read from the PNG behind the .jpg name
    anns = {project.category(a.category_id).name: a for a in project.annotations()}
    assert set(anns) == {"box", "tri", "round", "blob", "person"}
    assert anns["box"].kind is Kind.BOX and anns["box"].box_xywh == (10, 5, 20, 15)
    assert anns["box"].attributes == {"flags": {"occluded": True}}
    assert anns["tri"].kind is Kind.POLYGON and anns["tri"].attributes == {"description": "a triangle"}
    # circle: a polygon on the rim; its area is within 1 % of the true circle's
    circle = anns["round"]
    assert circle.kind is Kind.POLYGON and circle.attributes == {"shape_type": "circle"}
    ideal = np.zeros((60, 80), np.uint8)
    ImageDraw.Draw(Image.fromarray(ideal)).ellipse([10, 30, 30, 50], fill=1)
    yy, xx = np.mgrid[:60, :80]
    truth = (xx + 0.5 - 20) ** 2 + (yy + 0.5 - 40) ** 2 <= 100
    mine = annotation_mask(circle, 60, 80)
    assert (mine & truth).sum() / (mine | truth).sum() > 0.9
    # the mask crop sits with its top-left pixel at the first point (floored)
    blob = decode_rle(anns["blob"].rle or {})
    assert blob.sum() == 20 and blob[11:15, 62:67].all()
    # the grouped shapes are one object in two parts
    person = anns["person"]
    assert person.kind is Kind.POLYGON and len(person.polygons or ()) == 2 and person.group_id == 3
    ignore = decode_rle(project.ignore_mask(image.id) or {})
    assert ignore[55, 75] and not ignore[10, 10]


def test_labelme_round_trip_through_export(make_project: Callable[[Path], Project], tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj")
    import_annotations(project, primitives_file(tmp_path), format="labelme", add_images=True)
    report = export_annotations(project, tmp_path / "out", format="labelme")
    assert (report.images, report.annotations) == (1, 5)
    written = json.loads((tmp_path / "out" / "pic.json").read_text())
    assert written["imageData"] is None and (written["imageWidth"], written["imageHeight"]) == (80, 60)
    assert (tmp_path / "out" / written["imagePath"]).resolve() == (tmp_path / "data" / "pic.jpg").resolve()
    kinds = sorted((s["label"], s["shape_type"]) for s in written["shapes"])
    assert kinds == [
        ("__ignore__", "mask"),
        ("blob", "mask"),
        ("box", "rectangle"),
        ("person", "polygon"),
        ("person", "polygon"),
        ("round", "polygon"),
        ("tri", "polygon"),
    ]
    again = make_project(tmp_path / "again")
    import_annotations(
        again, tmp_path / "out", format="labelme", add_images=True, images_dir=tmp_path / "data"
    )  # the images folder: outside "out"

    def masks(p: Project) -> dict[str, np.ndarray]:
        return {p.category(a.category_id).name: annotation_mask(a, 60, 80) for a in p.annotations()}

    before, after = masks(project), masks(again)
    assert set(before) == set(after)
    for name in before:
        assert (before[name] == after[name]).all(), name
    assert (decode_rle(again.ignore_mask(1) or {}) == decode_rle(project.ignore_mask(1) or {})).all()
    assert {a.kind for a in again.annotations()} == {a.kind for a in project.annotations()}


def test_labelme_3_file_without_size_and_missing_image(make_project: Callable[[Path], Project], tmp_path: Path) -> None:
    make_image(tmp_path / "a.jpg", 30, 20, fmt="PNG")
    old = {
        "version": "3.5.0",
        "flags": {},
        "lineColor": [0, 255, 0, 128],
        "imagePath": "a.jpg",
        "imageData": None,
        "shapes": [
            {
                "label": "apple",
                "points": [[2, 3], [12, 13]],
                "shape_type": "rectangle",
                "line_color": None,
                "fill_color": None,
            }
        ],
    }
    (tmp_path / "a.json").write_text(json.dumps(old))
    (tmp_path / "b.json").write_text(json.dumps(old | {"imagePath": "b.jpg"}))
    (tmp_path / "other.json").write_text(json.dumps({"images": []}))
    project = make_project(tmp_path / "proj")
    report = import_annotations(project, tmp_path, format="labelme", add_images=True)
    assert (report.images, report.annotations) == (1, 1)
    assert report.skipped == {
        "image file not found": 1,
        "shape of a missing image": 1,
        "JSON file that is not labelme's": 1,
    }
    assert project.annotations()[0].box_xywh == (2, 3, 10, 10)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"shapes": [', "not valid JSON"),
        (json.dumps({"shapes": {}}), "'shapes' must be a list"),
        (
            json.dumps({"imagePath": "a.png", "shapes": [{"label": "x", "points": "nope", "shape_type": "polygon"}]}),
            "'points' must be a list",
        ),
        (json.dumps({"imagePath": "a.png", "shapes": [{"points": [[1, 2]]}]}), "needs a string 'label'"),
        (json.dumps({"imagePath": "a.png", "shapes": [shape("m", [[1, 1]], "mask", mask="@@@")]}), "not a base64 PNG"),
    ],
)
def test_broken_labelme_files_change_nothing(
    make_project: Callable[[Path], Project], tmp_path: Path, text: str, message: str
) -> None:
    make_image(tmp_path / "a.png")
    project = make_project(tmp_path / "proj")
    before = project_state(project)
    (tmp_path / "bad.json").write_text(text)
    with pytest.raises(FormatError, match=message) as info:
        import_annotations(project, tmp_path / "bad.json", format="labelme", add_images=True)
    assert "bad.json" in str(info.value)
    assert project_state(project) == before


# ---- real files ---------------------------------------------------------------------------------


def labelme_truth(doc: dict[str, Any], height: int, width: int) -> list[tuple[str, np.ndarray]]:
    """The objects of a labelme file, grouped as labelme2coco does: polygons and rectangles
    rasterised the COCO way (as labelme's own COCO export is read), circles as the true disc
    (pixel centres within the radius), mask crops as they are."""
    objects: dict[Any, np.ndarray] = {}
    yy, xx = np.mgrid[:height, :width]
    for i, s in enumerate(doc["shapes"]):
        if s["label"] == "__ignore__" or s["shape_type"] in ("line", "linestrip", "point"):
            continue
        pts = np.asarray(s["points"], dtype=np.float64)
        if s["shape_type"] == "rectangle":
            (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
            mask = polygons_to_mask([np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])], height, width)
        elif s["shape_type"] == "circle":
            (cx, cy), (px, py) = pts
            mask = (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= (px - cx) ** 2 + (py - cy) ** 2
        elif s["shape_type"] == "mask":
            crop = np.asarray(Image.open(io.BytesIO(base64.b64decode(s["mask"]))).convert("L")) > 0
            mask = np.zeros((height, width), bool)
            x, y = int(pts[0][0]), int(pts[0][1])
            mask[y : y + crop.shape[0], x : x + crop.shape[1]] = crop
        else:
            mask = polygons_to_mask([pts], height, width)
        key = (s["label"], s["group_id"]) if s.get("group_id") is not None else (s["label"], None, i)
        objects[key] = objects.get(key, np.zeros_like(mask)) | mask
    return [(key[0], mask) for key, mask in objects.items()]


@pytest.mark.parametrize(
    "folder", ["instance_segmentation/data_annotated", "bbox_detection/data_annotated", "primitives"]
)
def test_labelme_examples_to_coco(
    make_project: Callable[[Path], Project], shared_data: Path, tmp_path: Path, folder: str
) -> None:
    source = shared_data / "labelme-examples" / folder
    project = make_project(tmp_path / "proj")
    report = import_annotations(project, source, format="labelme", add_images=True)
    export_annotations(project, tmp_path / "out.json", format="coco")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(tmp_path / "out.json"))
    names = {c["id"]: c["name"] for c in coco.dataset["categories"]}
    total = 0
    for path in sorted(source.glob("*.json")):
        doc = json.loads(path.read_text())
        image = next(im for im in coco.dataset["images"] if Path(im["file_name"]).name == doc["imagePath"])
        truth = labelme_truth(doc, image["height"], image["width"])
        mine = [(names[a["category_id"]], coco.annToMask(a).astype(bool)) for a in coco.imgToAnns[image["id"]]]
        assert len(mine) == len(truth)
        for (name, a), (other, b) in zip(truth, mine, strict=True):
            assert name == other
            assert (a & b).sum() / (a | b).sum() >= 0.98, (path.name, name)
        total += len(truth)
    assert report.annotations == total == len(coco.anns)


def test_labelme_instances_match_labelmes_own_coco(
    make_project: Callable[[Path], Project], shared_data: Path, tmp_path: Path
) -> None:
    """Our labelme → COCO gives the masks labelme's own converter wrote, object for object."""
    root = shared_data / "labelme-examples" / "instance_segmentation"
    project = make_project(tmp_path / "proj")
    report = import_annotations(project, root / "data_annotated", format="labelme", add_images=True)
    assert report.ignore_masks == 2
    export_annotations(project, tmp_path / "out.json", format="coco")
    with contextlib.redirect_stdout(io.StringIO()):
        theirs, mine = COCO(str(root / "data_dataset_coco" / "annotations.json")), COCO(str(tmp_path / "out.json"))
    their_names = {c["id"]: c["name"] for c in theirs.dataset["categories"]}
    my_names = {c["id"]: c["name"] for c in mine.dataset["categories"]}
    for image in theirs.dataset["images"]:
        own = next(im for im in mine.dataset["images"] if Path(im["file_name"]).name == Path(image["file_name"]).name)
        a_list, b_list = theirs.imgToAnns[image["id"]], mine.imgToAnns[own["id"]]
        assert len(a_list) == len(b_list)
        for a, b in zip(a_list, b_list, strict=True):
            assert their_names[a["category_id"]] == my_names[b["category_id"]]
            ma, mb = theirs.annToMask(a).astype(bool), mine.annToMask(b).astype(bool)
            assert (ma & mb).sum() / (ma | mb).sum() >= 0.98


def test_fruit_labelme_3_5(make_project: Callable[[Path], Project], shared_data: Path, tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj")
    report = import_annotations(project, shared_data / "fruit" / "train", format="labelme", add_images=True)
    assert (report.images, report.annotations, report.done) == (140, 140, 140)
    assert not report.skipped
    assert {c.name for c in project.categories()} == {"apple", "orange", "banana"}
    assert all(r.width and r.height for r in project.images())


def test_labelme_matches_the_projects_images_and_adds_only_when_asked(
    make_project: Callable[[Path], Project], tmp_path: Path
) -> None:
    """A project holding copies of some of the source's images: those are matched (by relative
    path, then by file name), the others are skipped unless add_images; one transaction."""
    src = tmp_path / "src"
    for name in ("a", "b", "c"):
        make_image(src / f"{name}.png", 40, 30, fmt="PNG")
        (src / f"{name}.json").write_text(
            json.dumps({"imagePath": f"{name}.png", "shapes": [shape("cat", [[2, 2], [10, 10]], "rectangle")]})
        )
    project = make_project(tmp_path / "proj")
    make_image(project.root / "images" / "a.png", 40, 30, fmt="PNG")  # a copy, by file name
    project.add_images([project.root / "images" / "a.png", src / "b.png"])  # b: by its own path
    report = import_annotations(project, src, format="labelme")
    assert (report.images, report.images_matched, report.images_added, report.annotations) == (2, 2, 0, 2)
    assert report.skipped["image not in the project (import with add images to add it)"] == 1
    assert "2 matched in the project, 0 new" in report.summary()
    assert sorted(r.path for r in project.images()) == ["../src/b.png", "images/a.png"]
    again = import_annotations(project, src, format="labelme", add_images=True)
    assert (again.images_added, again.annotations) == (1, 1)
    assert len(project.images()) == 3

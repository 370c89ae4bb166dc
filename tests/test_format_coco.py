"""COCO instances JSON: import of every geometry COCO has, export that pycocotools loads, round trips."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from annotation_support import proposal
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from test_format_common import coco_document, make_image, project_state

from labeler.core.annotation import Annotation, Kind, State
from labeler.core.geometry import encode_mask, polygons_area
from labeler.core.store import ModelVersion, Project
from labeler.formats import export_annotations, import_annotations
from labeler.formats.errors import FormatError


def load_coco(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def blob(h: int, w: int, cy: int, cx: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def rich_document(tmp_path: Path) -> dict[str, Any]:
    """Every geometry COCO has: polygons in two parts, uncompressed and compressed RLE, boxes only,
    a crowd region, non-contiguous category ids, a background category, no info/licenses."""
    doc = coco_document(tmp_path)
    crowd = encode_mask(blob(30, 40, 20, 25, 6))
    uncompressed = mask_utils.frPyObjects(
        {"size": [30, 40], "counts": _uncompressed_counts(blob(30, 40, 10, 10, 5))}, 30, 40
    )
    assert isinstance(uncompressed, dict)
    doc["categories"] = [
        {"id": 0, "name": "_background_"},
        {"id": 3, "name": "cat"},
        {"id": 17, "name": "dog"},
        {"id": 90, "name": "bird"},
    ]
    doc["type"] = "instances"
    doc["annotations"] = [
        {
            "id": 10**12,
            "image_id": 7,
            "category_id": 3,
            "iscrowd": 0,
            "bbox": [2, 2, 30, 20],
            "segmentation": [[2, 2, 12, 2, 12, 12], [20, 15, 32, 15, 32, 22, 26, 22]],
        },
        {
            "id": 11,
            "image_id": 7,
            "category_id": 90,
            "iscrowd": 1,
            "bbox": [0, 0, 1, 1],
            "segmentation": {"size": [30, 40], "counts": _uncompressed_counts(blob(30, 40, 20, 25, 6))},
        },
        {
            "id": 12,
            "image_id": 7,
            "category_id": 17,
            "iscrowd": 0,
            "bbox": [0, 0, 1, 1],
            "segmentation": {"size": [30, 40], "counts": crowd["counts"]},
        },
        {"id": 13, "image_id": 9, "category_id": 17, "iscrowd": 0, "bbox": [5, 5, 10, 5]},
        {"id": 14, "image_id": 9, "category_id": 0, "iscrowd": 0, "bbox": [1, 1, 3, 3]},
        {
            "id": 15,
            "image_id": 9,
            "category_id": 3,
            "iscrowd": 0,
            "bbox": [1, 1, 4, 4],
            "segmentation": [[1, 1, 5, 1, 5, 5, 1, 5]],
        },
    ]
    return doc


def _uncompressed_counts(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE: run lengths in column-major order, starting with a run of 0s."""
    flat = mask.T.reshape(-1).astype(np.uint8)
    counts, current, run = [], 0, 0
    for value in flat:
        if value == current:
            run += 1
        else:
            counts.append(run)
            current, run = value, 1
    counts.append(run)
    return [int(c) for c in counts]


@pytest.fixture
def rich(make_project: Callable[[Path], Project], tmp_path: Path) -> tuple[Project, Path]:
    (tmp_path / "rich.json").write_text(json.dumps(rich_document(tmp_path)))
    return make_project(tmp_path / "proj"), tmp_path / "rich.json"


def test_import_keeps_each_geometry_and_drops_background(rich: tuple[Project, Path]) -> None:
    project, source = rich
    report = import_annotations(project, source, format="coco")
    assert (report.images, report.images_added, report.annotations, report.done) == (2, 2, 5, 2)
    assert report.skipped == {"background category": 1}
    assert [c.name for c in project.categories()] == ["cat", "dog", "bird"]  # file's id order
    anns = project.annotations()
    kinds = [(project.category(a.category_id).name, a.kind, a.iscrowd) for a in anns]
    assert kinds == [
        ("cat", Kind.POLYGON, False),
        ("bird", Kind.MASK, True),
        ("dog", Kind.MASK, False),
        ("dog", Kind.BOX, False),
        ("cat", Kind.BOX, False),
    ]
    assert len(anns[0].polygons or ()) == 2
    assert anns[3].box_xywh == (5, 5, 10, 5)
    assert anns[4].box_xywh == (1, 1, 4, 4)  # a rectangle polygon is a box
    images = {Path(r.path).name: r for r in project.images()}
    assert (images["b.png"].width, images["b.png"].height) == (50, 20) and images["b.png"].done


def test_export_loads_in_pycocotools_with_consistent_bbox_and_area(rich: tuple[Project, Path], tmp_path: Path) -> None:
    project, source = rich
    import_annotations(project, source, format="coco")
    report = export_annotations(project, tmp_path / "out" / "coco.json", format="coco")
    assert (report.images, report.annotations, report.files) == (2, 5, 1)
    coco = load_coco(tmp_path / "out" / "coco.json")
    assert [c["id"] for c in coco.dataset["categories"]] == [1, 2, 3]
    assert [c["name"] for c in coco.dataset["categories"]] == ["cat", "dog", "bird"]
    assert {im["id"] for im in coco.dataset["images"]} == {r.id for r in project.images()}
    for ann in coco.dataset["annotations"]:
        mask = coco.annToMask(ann).astype(bool)
        seg = ann["segmentation"]
        if isinstance(seg, dict):
            assert isinstance(seg["counts"], str)  # compressed
            assert ann["area"] == mask.sum()
            assert ann["bbox"] == [float(v) for v in mask_utils.toBbox(coco.annToRLE(ann))]
        else:
            assert ann["area"] == pytest.approx(polygons_area([np.reshape(p, (-1, 2)) for p in seg]))
            pts = np.concatenate([np.reshape(p, (-1, 2)) for p in seg])
            x0, y0 = pts.min(axis=0)
            assert ann["bbox"] == pytest.approx([x0, y0, *(pts.max(axis=0) - [x0, y0])])
    crowd = [a for a in coco.dataset["annotations"] if a["iscrowd"]]
    assert len(crowd) == 1 and isinstance(crowd[0]["segmentation"], dict)
    # loadRes accepts our annotations as results too
    with contextlib.redirect_stdout(io.StringIO()):
        results = coco.loadRes([dict(a, score=1.0) for a in coco.dataset["annotations"] if not a["iscrowd"]])
    assert len(results.anns) == 4


def test_export_is_stable_and_round_trips(
    make_project: Callable[[Path], Project], rich: tuple[Project, Path], tmp_path: Path
) -> None:
    project, source = rich
    import_annotations(project, source, format="coco")
    export_annotations(project, tmp_path / "a.json", format="coco")
    export_annotations(project, tmp_path / "b.json", format="coco")
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert a["images"] == b["images"] and a["annotations"] == b["annotations"]
    # into a new project: the same labels come back
    again = make_project(tmp_path / "again")
    report = import_annotations(again, tmp_path / "a.json", format="coco")
    assert (report.annotations == 5 and report.images_added == 0) or report.images_added == 2

    def signature(p: Project) -> list[tuple[Any, ...]]:
        out = []
        for ann in p.annotations():
            h, w = p.image(ann.image_id).height, p.image(ann.image_id).width
            from labeler.core.geometry import annotation_mask

            out.append(
                (p.category(ann.category_id).name, ann.kind, ann.iscrowd, annotation_mask(ann, h or 0, w or 0).sum())
            )
        return sorted(out, key=str)

    assert signature(again) == signature(project)


def test_polygon_mode_traces_masks_but_keeps_crowds_as_rle(rich: tuple[Project, Path], tmp_path: Path) -> None:
    project, source = rich
    import_annotations(project, source, format="coco")
    export_annotations(project, tmp_path / "rle.json", format="coco")
    export_annotations(project, tmp_path / "poly.json", format="coco", masks="polygon")
    rle, poly = load_coco(tmp_path / "rle.json"), load_coco(tmp_path / "poly.json")
    for ann_id, ann in poly.anns.items():
        if ann["iscrowd"]:
            assert isinstance(ann["segmentation"], dict)
        else:
            assert isinstance(ann["segmentation"], list)
        assert iou(poly.annToMask(ann).astype(bool), rle.annToMask(rle.anns[ann_id]).astype(bool)) > 0.95


def test_proposals_only_on_request_and_with_score(make_project: Callable[[Path], Project], tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj")
    image_id = project.add_images([make_image(tmp_path / "a.png")])[0]
    cat = project.add_category("thing").id
    project.add_annotation(Annotation(image_id=image_id, category_id=cat, kind=Kind.BOX, box_xywh=(1, 1, 5, 5)))
    version = project.add_model_version(ModelVersion(plugin="p", settings={}, categories=(cat,), checkpoint="x"))
    proposals = [proposal(image_id, cat, version=version.id, score=0.75, box_xywh=(10, 10, 5, 5))]
    stored = project.replace_proposals(image_id, plugin="p", proposals=proposals)
    rejected = replace(
        proposal(image_id, cat, version=version.id, score=0.2, box_xywh=(20, 20, 5, 5)), state=State.REJECTED
    )
    project.add_annotation(rejected)
    export_annotations(project, tmp_path / "acc.json", format="coco")
    export_annotations(project, tmp_path / "all.json", format="coco", include_proposals=True)
    acc = json.loads((tmp_path / "acc.json").read_text())["annotations"]
    both = json.loads((tmp_path / "all.json").read_text())["annotations"]
    assert len(acc) == 1 and "score" not in acc[0]
    assert len(both) == 2 and both[1]["score"] == 0.75 and both[1]["id"] == stored[0].id


def test_images_found_through_images_dir_and_missing_ones_counted(
    make_project: Callable[[Path], Project], tmp_path: Path
) -> None:
    doc = coco_document(tmp_path)
    doc["images"][0]["file_name"] = "/elsewhere/on/another/machine/a.png"
    doc["images"].append({"id": 99, "file_name": "gone.png", "width": 5, "height": 5})
    doc["annotations"].append({"id": 5, "image_id": 99, "category_id": 3, "bbox": [0, 0, 2, 2]})
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "c.json").write_text(json.dumps(doc))
    project = make_project(tmp_path / "proj")
    report = import_annotations(project, tmp_path / "ann" / "c.json", format="coco", images_dir=tmp_path / "imgs")
    assert report.images == 2 and report.annotations == 2
    assert report.skipped == {"image file not found": 1, "annotation of a missing image": 1}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"images": [', "not valid JSON"),
        ("[1, 2]", "top level is not an object"),
        ('{"annotations": []}', "no 'images' list"),
    ],
)
def test_broken_files_name_the_file_and_reason(
    make_project: Callable[[Path], Project], tmp_path: Path, content: str, message: str
) -> None:
    (tmp_path / "broken.json").write_text(content)
    project = make_project(tmp_path / "proj")
    with pytest.raises(FormatError, match=message) as info:
        import_annotations(project, tmp_path / "broken.json", format="coco")
    assert "broken.json" in str(info.value)


def test_unknown_category_or_image_id_is_an_error_and_changes_nothing(
    make_project: Callable[[Path], Project], tmp_path: Path
) -> None:
    project = make_project(tmp_path / "proj")
    before = project_state(project)
    doc = coco_document(tmp_path)
    doc["annotations"][1]["category_id"] = 55
    (tmp_path / "c.json").write_text(json.dumps(doc))
    with pytest.raises(FormatError, match="refers to category 55"):
        import_annotations(project, tmp_path / "c.json", format="coco")
    doc = coco_document(tmp_path)
    doc["annotations"][1]["image_id"] = 1234
    (tmp_path / "c.json").write_text(json.dumps(doc))
    with pytest.raises(FormatError, match="image id 1234"):
        import_annotations(project, tmp_path / "c.json", format="coco")
    assert project_state(project) == before


def test_mask_of_the_wrong_size_is_skipped(make_project: Callable[[Path], Project], tmp_path: Path) -> None:
    doc = coco_document(tmp_path)
    doc["annotations"][0]["segmentation"] = encode_mask(np.ones((5, 5), bool))
    (tmp_path / "c.json").write_text(json.dumps(doc))
    report = import_annotations(make_project(tmp_path / "proj"), tmp_path / "c.json", format="coco")
    assert report.annotations == 1 and report.skipped == {"mask size differs from the image": 1}


# ---- real files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("masks", ["rle", "polygon"])
def test_coco_tiny_round_trip(
    make_project: Callable[[Path], Project], shared_data: Path, tmp_path: Path, masks: str
) -> None:
    source = shared_data / "coco-tiny" / "val2017" / "instances_val2017.json"
    project = make_project(tmp_path / "proj")
    report = import_annotations(project, source, format="coco")
    assert (report.images, report.annotations) == (80, 815) and not report.skipped
    export_annotations(project, tmp_path / "out.json", format="coco", masks=masks)
    original, exported = load_coco(source), load_coco(tmp_path / "out.json")
    assert len(exported.anns) == len(original.anns) == 815
    assert len({c["name"] for c in exported.dataset["categories"]}) == 80
    by_name = {Path(im["file_name"]).name: im["id"] for im in exported.dataset["images"]}
    names = {c["id"]: c["name"] for c in original.dataset["categories"]}
    new_names = {c["id"]: c["name"] for c in exported.dataset["categories"]}
    worst = 1.0
    for image in original.dataset["images"]:
        mine = exported.imgToAnns[by_name[image["file_name"]]]
        theirs = original.imgToAnns[image["id"]]
        assert len(mine) == len(theirs)
        # annotation order within an image is kept (import in file order, export by id)
        for a, b in zip(theirs, mine, strict=True):
            assert names[a["category_id"]] == new_names[b["category_id"]]
            assert a["iscrowd"] == b["iscrowd"]
            worst = min(worst, iou(original.annToMask(a).astype(bool), exported.annToMask(b).astype(bool)))
            if not a["iscrowd"]:
                assert b["area"] == pytest.approx(a["area"], rel=1e-6)
                assert b["bbox"] == pytest.approx(a["bbox"], abs=0.01)
    assert worst >= 0.98


def test_labelme_written_coco_file(make_project: Callable[[Path], Project], shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "labelme-examples" / "instance_segmentation" / "data_dataset_coco" / "annotations.json"
    project = make_project(tmp_path / "proj")
    report = import_annotations(project, source, format="coco")
    assert (report.images, report.annotations) == (3, 12) and not report.skipped
    assert "_background_" not in {c.name for c in project.categories()}
    assert all(a.kind is Kind.POLYGON for a in project.annotations())

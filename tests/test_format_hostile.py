"""Hostile label files: every importer fails with its one-line error or imports cleanly, never
another exception; a failed import leaves the project unchanged; nothing poisonous is stored."""

from __future__ import annotations

import base64
import json
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_format_common import make_image, project_state

from labeler.core.annotation import Annotation, Kind
from labeler.core.geometry import check_rle, encode_mask
from labeler.core.images import ImageError
from labeler.core.store import Project, ProjectError
from labeler.formats import export_annotations, import_annotations
from labeler.formats.errors import FormatError
from labeler.formats.masks import default_values, parse_values

CLEAN = (FormatError, ProjectError, ImageError)


def bomb_png(width: int, height: int) -> bytes:
    """A small valid 8-bit gray PNG of ``width`` x ``height`` zeros."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    body = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def coco_doc(**image: Any) -> dict[str, Any]:
    return {
        "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30} | image],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 5]}],
        "categories": [{"id": 1, "name": "cat"}],
    }


@pytest.fixture
def coco_setup(make_project: Callable[[Path], Project], tmp_path: Path) -> tuple[Project, Path]:
    make_image(tmp_path / "src" / "a.png", 40, 30, fmt="PNG")
    return make_project(tmp_path / "proj"), tmp_path / "src"


def write_json(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc))
    return path


# ---- regression cases from the fuzz run -------------------------------------------------------


def test_deeply_nested_json_is_a_format_error(coco_setup: tuple[Project, Path]) -> None:
    project, src = coco_setup
    (src / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(FormatError, match="nested too deeply"):
        import_annotations(project, src / "deep.json", format="coco")
    (src / "deep.json").write_text('{"shapes": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(FormatError, match="nested too deeply"):
        import_annotations(project, src / "deep.json", format="labelme", add_images=True)


@pytest.mark.parametrize("where", ["image", "annotation", "category"])
def test_unhashable_ids_are_format_errors(coco_setup: tuple[Project, Path], where: str) -> None:
    project, src = coco_setup
    doc = coco_doc()
    {"image": doc["images"][0], "annotation": doc["annotations"][0], "category": doc["categories"][0]}[where][
        "id" if where != "annotation" else "category_id"
    ] = [1, 2]
    with pytest.raises(FormatError):
        import_annotations(project, write_json(src / "x.json", doc), format="coco")
    assert project.annotations() == [] and project.images() == []


def test_huge_numbers_and_infinity_never_reach_the_store(coco_setup: tuple[Project, Path]) -> None:
    project, src = coco_setup
    doc = coco_doc(width=10**30, height=2**63)
    doc["annotations"] = [
        {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[2147483648, 1, 5, 5, 1, 9]]},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [10**400 if False else 1e308, 0, 5, 5]},
        {"id": 3, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 10**30, 1, 5, 9]]},
        {"id": 4, "image_id": 1, "category_id": 1, "bbox": [100, 100, 5, 5]},  # wholly outside
        {"id": 5, "image_id": 1, "category_id": 1, "bbox": [30, 20, 50, 50]},  # clipped
    ]
    report = import_annotations(project, write_json(src / "x.json", doc), format="coco")
    image = project.images()[0]
    assert (image.width, image.height) == (40, 30)  # the file's header, not the declared size
    anns = project.annotations()
    assert [a.box_xywh for a in anns] == [(30.0, 20.0, 10.0, 10.0)]
    assert report.annotations == 1 and sum(report.skipped.values()) == 4
    export_annotations(project, src / "out.json", format="coco")
    json.loads((src / "out.json").read_text(), parse_constant=lambda name: pytest.fail(f"{name} written"))
    export_annotations(project, src / "masks", format="masks")


def test_voc_infinity_boxes_and_non_ascii_sizes(make_project: Callable[[Path], Project], tmp_path: Path) -> None:
    make_image(tmp_path / "a.jpg", 40, 30, fmt="JPEG")
    (tmp_path / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><size><width>①</width><height>²</height></size>"
        "<object><name>dog</name><bndbox><xmin>0</xmin><ymin>0</ymin><xmax>Infinity</xmax><ymax>5</ymax></bndbox></object>"
        "<object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>5</ymax></bndbox></object>"
        "</annotation>"
    )
    project = make_project(tmp_path / "proj")
    report = import_annotations(project, tmp_path / "a.xml", format="voc")
    assert report.annotations == 1 and [a.box_xywh for a in project.annotations()] == [(1, 1, 8, 4)]
    assert (project.images()[0].width, project.images()[0].height) == (40, 30)


def test_voc_file_name_too_long_for_the_file_system(make_project: Callable[[Path], Project], tmp_path: Path) -> None:
    make_image(tmp_path / "a.jpg", 40, 30, fmt="JPEG")
    (tmp_path / "a.xml").write_text(f"<annotation><filename>{'x' * 5000}.jpg</filename></annotation>")
    report = import_annotations(make_project(tmp_path / "proj"), tmp_path / "a.xml", format="voc")
    assert report.images == 1  # found by the XML's own stem instead


def test_label_files_cannot_point_the_project_at_any_file(
    make_project: Callable[[Path], Project], tmp_path: Path
) -> None:
    make_image(tmp_path / "src" / "a.png", 40, 30, fmt="PNG")
    (tmp_path / "src" / "notes.png").write_text("not an image at all")
    names = ["/etc/passwd", "../../../../../../etc/passwd", "/proc/self/environ", "notes.png", "a.png"]
    doc = {"images": [{"id": i, "file_name": n} for i, n in enumerate(names)], "annotations": [], "categories": []}
    project = make_project(tmp_path / "proj")
    report = import_annotations(project, write_json(tmp_path / "src" / "x.json", doc), format="coco")
    assert [r.path for r in project.images()] == ["../src/a.png"]
    assert report.images_added == 1 and report.skipped.get("image file not found") == 4


def test_yolo_symlink_out_of_the_folder_is_not_followed_nor_quoted(
    make_project: Callable[[Path], Project], tmp_path: Path
) -> None:
    src = tmp_path / "yolo"
    make_image(src / "images" / "a.png", 40, 30, fmt="PNG")
    make_image(src / "images" / "b.png", 40, 30, fmt="PNG")
    (src / "labels").mkdir()
    (src / "classes.txt").write_text("cat\n")
    (src / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    (src / "labels" / "b.txt").symlink_to(secret)
    project = make_project(tmp_path / "proj")
    report = import_annotations(project, src, format="yolo")
    assert report.annotations == 1 and sum(report.skipped.values()) == 1
    (src / "labels" / "a.txt").write_text("root:x:0:0:root:/root:/bin/bash\n")
    with pytest.raises(FormatError) as info:
        import_annotations(project, src, format="yolo")
    assert "root:x" not in str(info.value) and "/bin/bash" not in str(info.value)


def yolo_folder(tmp_path: Path, label_line: str, data_yaml: bytes) -> Path:
    """A YOLO folder of one 40 x 30 image with one label line and the given ``data.yaml``."""
    src = tmp_path / "yolo"
    make_image(src / "images" / "a.png", 40, 30, fmt="PNG")
    (src / "labels").mkdir()
    (src / "labels" / "a.txt").write_text(label_line)
    (src / "data.yaml").write_bytes(data_yaml)
    return src


@pytest.mark.parametrize(
    ("yaml_text", "names"),
    [
        ("names:\n  - apple\n  - 'it''s'\n", ["apple", "it's"]),
        ('names: {0: apple, 1: "b: c"}  # note\n', ["apple", "b: c"]),
        ("path: ../x\nnames:\n  0: apple\n  1: banana # yellow\n", ["apple", "banana"]),
        ("names: &a [apple, pear]\nother: *a\n", ["apple", "pear"]),
    ],
)
def test_yolo_reads_ordinary_yaml(
    make_project: Callable[[Path], Project], tmp_path: Path, yaml_text: str, names: list[str]
) -> None:
    src = yolo_folder(tmp_path, "1 0.5 0.5 0.2 0.2\n", yaml_text.encode())
    project = make_project(tmp_path / "proj")
    import_annotations(project, src, format="yolo")
    assert [c.name for c in project.categories()] == [names[1]]


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe\x00binary", b"names: [a, b\n", b"names: 5\n", b"names: !!python/object/apply:os.system ['true']\n"],
)
def test_yolo_bad_class_files_are_format_errors(
    make_project: Callable[[Path], Project], tmp_path: Path, content: bytes
) -> None:
    src = yolo_folder(tmp_path, "0 0.5 0.5 0.2 0.2\n", content)
    with pytest.raises(FormatError):
        import_annotations(make_project(tmp_path / "proj"), src, format="yolo")
    (src / "data.yaml").unlink()
    (src / "classes.txt").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(FormatError, match="not UTF-8"):
        import_annotations(make_project(tmp_path / "proj2"), src, format="yolo")


def test_masks_values_with_non_ascii_digits() -> None:
    for text in ("0=a,²=b", "①=x"):
        with pytest.raises(FormatError, match="not a pixel value"):
            parse_values(text)


def test_label_png_and_labelme_mask_bombs_are_refused(
    make_project: Callable[[Path], Project], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABELER_MAX_PIXELS", str(100 * 100))
    make_image(tmp_path / "image" / "0.png", 40, 30, fmt="PNG")
    (tmp_path / "label").mkdir()
    (tmp_path / "label" / "0.png").write_bytes(bomb_png(3000, 3000))
    project = make_project(tmp_path / "proj")
    with pytest.raises(FormatError, match="over the limit"):
        import_annotations(project, tmp_path / "label", format="masks")
    doc = {
        "imagePath": "image/0.png",
        "shapes": [
            {
                "label": "m",
                "points": [[0, 0], [5, 5]],
                "shape_type": "mask",
                "mask": base64.b64encode(bomb_png(3000, 3000)).decode(),
            }
        ],
    }
    with pytest.raises(FormatError, match="over the limit"):
        import_annotations(project, write_json(tmp_path / "m.json", doc), format="labelme", add_images=True)
    with project.open_again() as again:
        assert project_state(project) == project_state(again)
    assert project.annotations() == []


def test_rle_whose_counts_do_not_cover_the_image(coco_setup: tuple[Project, Path]) -> None:
    project, src = coco_setup
    doc = coco_doc()
    doc["annotations"][0] = {
        "id": 1,
        "image_id": 1,
        "category_id": 1,
        "segmentation": {"size": [30, 40], "counts": [5, 10, 3]},
    }
    with pytest.raises(FormatError, match="RLE"):
        import_annotations(project, write_json(src / "x.json", doc), format="coco")
    with pytest.raises(ValueError, match="cover"):
        check_rle({"size": [30, 40], "counts": encode_mask(np.ones((3, 4), bool))["counts"]}, max_pixels=10**6)


def test_store_door_refuses_poison_from_any_source(make_project: Callable[[Path], Project], tmp_path: Path) -> None:
    make_image(tmp_path / "a.png", 40, 30, fmt="PNG")
    project = make_project(tmp_path / "proj")
    image_id = project.add_images([tmp_path / "a.png"])[0]
    cat = project.add_category("cat").id
    for bad in (
        Annotation(image_id=image_id, category_id=cat, kind=Kind.BOX, box_xywh=(0, 0, float("inf"), 5)),
        Annotation(image_id=image_id, category_id=cat, kind=Kind.BOX, box_xywh=(50, 50, 5, 5)),
        Annotation(
            image_id=image_id,
            category_id=cat,
            kind=Kind.POLYGON,
            polygons=(np.array([[0, 0], [2147483648, 0], [5, 5]]),),
        ),
        Annotation(image_id=image_id, category_id=cat, kind=Kind.MASK, rle=encode_mask(np.ones((3, 4), bool))),
    ):
        with pytest.raises(ProjectError, match="refused"):
            project.add_annotation(bad)
    stored = project.add_annotation(
        Annotation(image_id=image_id, category_id=cat, kind=Kind.BOX, box_xywh=(-5, 10, 20, 40))
    )
    assert stored.box_xywh == (0, 10, 15, 20) and project.annotation(stored.id or 0).box_xywh == (0, 10, 15, 20)
    with pytest.raises(ProjectError):
        project.set_image_size(image_id, 2**63, 5)
    for name in ("a\nb", "tab\there", "x" * 300):
        with pytest.raises(ProjectError):
            project.add_category(name)


def test_category_named_superscript_two_exports_as_masks(
    make_project: Callable[[Path], Project], tmp_path: Path
) -> None:
    project = make_project(tmp_path / "proj")
    project.add_category("²")
    assert default_values(project.categories()) == {1: "²"}


# ---- property tests: any input gives a clean import or the importer's error ------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _import_is_clean(project: Project, source: Path, fmt: str) -> None:
    before = project_state(project)
    try:
        import_annotations(project, source, format=fmt)
    except CLEAN:
        assert project_state(project) == before
        return
    for ann in project.annotations():  # whatever came in is writable
        assert ann.kind is not Kind.BOX or all(np.isfinite(ann.box_xywh or ()))


def _with_image(folder: Path) -> None:
    if not (folder / "a.png").exists():
        make_image(folder / "a.png", 40, 30, fmt="PNG")


@FAST
@given(value=JSON, where=st.sampled_from(["top", "image", "annotation", "segmentation", "bbox", "category"]))
def test_coco_any_json_value(tmp_path_factory: pytest.TempPathFactory, value: Any, where: str) -> None:
    folder = tmp_path_factory.mktemp("coco")
    _with_image(folder)
    doc: Any = coco_doc()
    if where == "top":
        doc = value
    elif where == "image":
        doc["images"][0]["file_name" if isinstance(value, str) else "width"] = value
    elif where == "category":
        doc["categories"][0]["name"] = value
    else:
        doc["annotations"][0][where if where != "annotation" else "image_id"] = value
    path = folder / "x.json"
    path.write_text(json.dumps(doc))
    _import_is_clean(Project.create(folder / "proj"), path, "coco")


@FAST
@given(
    shape=st.dictionaries(
        st.sampled_from(["label", "points", "shape_type", "group_id", "mask", "flags"]), JSON, max_size=6
    ),
    points=st.lists(st.lists(st.floats() | st.integers(), min_size=2, max_size=2), max_size=5),
)
def test_labelme_any_shape(tmp_path_factory: pytest.TempPathFactory, shape: dict[str, Any], points: Any) -> None:
    folder = tmp_path_factory.mktemp("labelme")
    _with_image(folder)
    shape = {"label": "x", "points": points} | shape
    path = folder / "a.json"
    path.write_text(json.dumps({"imagePath": "a.png", "shapes": [shape]}))
    _import_is_clean(Project.create(folder / "proj"), path, "labelme")


@FAST
@given(data=st.binary(max_size=400), fmt=st.sampled_from(["coco", "labelme", "voc", "masks"]))
def test_any_bytes(tmp_path_factory: pytest.TempPathFactory, data: bytes, fmt: str) -> None:
    folder = tmp_path_factory.mktemp("bytes")
    _with_image(folder)
    suffix = {"coco": ".json", "labelme": ".json", "voc": ".xml", "masks": ".png"}[fmt]
    path = folder / ("a" + suffix if fmt != "masks" else "label/a.png")
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    _import_is_clean(Project.create(folder / "proj"), path, fmt)


@FAST
@given(
    xml=st.lists(
        st.sampled_from(["1", "-1", "inf", "nan", "①", "²", "1e400", "", "a" * 300, "2147483648"]),
        min_size=6,
        max_size=6,
    )
)
def test_voc_any_numbers(tmp_path_factory: pytest.TempPathFactory, xml: list[str]) -> None:
    folder = tmp_path_factory.mktemp("voc")
    _with_image(folder)
    w, h, x0, y0, x1, y1 = xml
    (folder / "a.xml").write_text(
        f"<annotation><filename>a.png</filename><size><width>{w}</width><height>{h}</height></size>"
        f"<object><name>d</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax>"
        "</bndbox></object></annotation>"
    )
    _import_is_clean(Project.create(folder / "proj"), folder / "a.xml", "voc")


@FAST
@given(
    labels=st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
    classes=st.binary(max_size=100) | st.text(max_size=100).map(str.encode),
    yaml_file=st.booleans(),
)
def test_yolo_any_files(
    tmp_path_factory: pytest.TempPathFactory, labels: bytes, classes: bytes, yaml_file: bool
) -> None:
    folder = tmp_path_factory.mktemp("yolo")
    _with_image(folder / "images")
    (folder / "labels").mkdir()
    (folder / "labels" / "a.txt").write_bytes(labels)
    (folder / ("data.yaml" if yaml_file else "classes.txt")).write_bytes(classes)
    _import_is_clean(Project.create(folder / "proj"), folder, "yolo")


@FAST
@given(text=st.text(max_size=30))
def test_masks_any_values(text: str) -> None:
    try:
        values = parse_values(text) if "=" in text or not os.path.exists(text) else None
    except FormatError:
        return
    assert values is None or all(0 <= v <= 65535 for v in values)


def test_coco_category_ids_of_mixed_types(coco_setup: tuple[Project, Path]) -> None:
    project, src = coco_setup
    doc = coco_doc()
    doc["categories"].append({"id": "2", "name": "dog"})
    import_annotations(project, write_json(src / "x.json", doc), format="coco")
    assert [c.name for c in project.categories()] == ["cat", "dog"]
